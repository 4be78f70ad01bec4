// A Livekeep server inside the test page: it replaces `fetch` and speaks just enough of
// the API contract (create live, tus HEAD/PATCH with checksums and deferred length, stop
// with size and SHA-256 checks, the live's poster) for the recorder's browser tests. Knobs let a
// test cut the network, fail PATCHes with 503, apply a PATCH and lose its answer, fail
// poster uploads with 503, or expire the token after some PATCHes (the old one then gets 401,
// as from a server whose short-lived tokens expire during a live).

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
const b64 = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)));
const json = (status, body) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
const error = (status, code, message) => json(status, { error: { code, message } });

export function installFakeServer(token) {
  const server = {
    token,
    offline: false,
    failPatches: 0,
    loseAnswers: 0,
    failPosters: 0,
    posterAttempts: 0,
    // After this many accepted PATCHes the token expires: `token` becomes `renewedToken`.
    expireTokenAfterPatches: null,
    renewedToken: `${token}-renewed`,
    acceptedPatches: 0,
    unauthorized: 0,
    // What `getTokenFor(server)` does: counts its calls, and throws while `getTokenRejects`
    // (counted too).
    getTokenCalls: 0,
    getTokenRejects: false,
    getTokenRejections: 0,
    // The token of every PATCH the server accepted, in order.
    patchTokens: [],
    // live id -> { type, bytes, stopped }: the last poster accepted, and whether the live had
    // been stopped when it came.
    posters: new Map(),
    patches: 0,
    conflicts: 0,
    heads: 0,
    uploads: new Map(),
    stops: [],
    realFetch: globalThis.fetch,
  };
  globalThis.fetch = async (input, init = {}) => {
    const url = new URL(input, location.href);
    const method = (init.method || "GET").toUpperCase();
    const headers = new Headers(init.headers);
    if (headers.get("Authorization") !== `Bearer ${server.token}`) {
      server.unauthorized += 1;
      return error(401, "unauthenticated", "a valid token is required");
    }
    if (method === "POST" && url.pathname === "/api/posts/live/") {
      const body = JSON.parse(init.body);
      const id = server.uploads.size + 1;
      const uploadId = `${id.toString(16)}abc`;
      server.uploads.set(uploadId, { liveId: id, title: body.content, parts: [], offset: 0, length: null });
      return json(201, { live_id: id, post: { id, content: body.content, live_status: "live" }, upload_url: `/api/uploads/${uploadId}` });
    }
    const upload = url.pathname.startsWith("/api/uploads/") && server.uploads.get(url.pathname.split("/")[3]);
    if (upload && method === "HEAD") {
      if (server.offline) throw new TypeError("Failed to fetch");
      server.heads += 1;
      const h = { "Tus-Resumable": "1.0.0", "Upload-Offset": String(upload.offset) };
      if (upload.length !== null) h["Upload-Length"] = String(upload.length);
      return new Response(null, { status: 200, headers: h });
    }
    if (upload && method === "PATCH") {
      if (server.offline) throw new TypeError("Failed to fetch");
      server.patches += 1;
      if (server.failPatches > 0) {
        server.failPatches -= 1;
        return error(503, "unavailable", "try again");
      }
      if (headers.get("Tus-Resumable") !== "1.0.0") return error(412, "version", "tus 1.0.0 only");
      if (headers.get("Content-Type") !== "application/offset+octet-stream") return error(415, "type", "bad type");
      if (Number(headers.get("Upload-Offset")) !== upload.offset) {
        server.conflicts += 1;
        return error(409, "offset_mismatch", "wrong offset");
      }
      const body = new Uint8Array(init.body);
      const checksum = headers.get("Upload-Checksum");
      if (body.length > 0) {
        if (!checksum || !checksum.startsWith("sha256 ")) return error(400, "checksum", "missing checksum");
        if (checksum.slice(7) !== b64(await crypto.subtle.digest("SHA-256", body))) {
          return error(460, "checksum_mismatch", "checksum mismatch");
        }
      }
      const length = headers.get("Upload-Length");
      if (length !== null) {
        if (upload.length !== null) return error(400, "length_set", "Upload-Length already set");
        upload.length = Number(length);
      }
      upload.parts.push(body.slice());
      upload.offset += body.length;
      server.patchTokens.push(server.token);
      server.acceptedPatches += 1;
      if (server.acceptedPatches === server.expireTokenAfterPatches) server.token = server.renewedToken;
      if (server.loseAnswers > 0) {
        server.loseAnswers -= 1;
        throw new TypeError("Failed to fetch");
      }
      return new Response(null, { status: 204, headers: { "Tus-Resumable": "1.0.0", "Upload-Offset": String(upload.offset) } });
    }
    const poster = url.pathname.match(/^\/api\/posts\/live\/(\d+)\/poster\/$/);
    if (poster && method === "PUT") {
      if (server.offline) throw new TypeError("Failed to fetch");
      server.posterAttempts += 1;
      if (server.failPosters > 0) {
        server.failPosters -= 1;
        return error(503, "unavailable", "try again");
      }
      if (headers.get("Content-Type") !== "image/jpeg") return error(415, "type", "a JPEG is expected");
      const liveId = Number(poster[1]);
      const bytes = new Uint8Array(await new Response(init.body).arrayBuffer());
      const stopped = server.stops.some((s) => s.live_id === liveId);
      server.posters.set(liveId, { type: headers.get("Content-Type"), bytes, stopped });
      return new Response(null, { status: 204 });
    }
    const stop = url.pathname.match(/^\/api\/posts\/live\/(\d+)\/stop\/$/);
    if (stop && method === "PUT") {
      if (server.offline) throw new TypeError("Failed to fetch");
      const data = JSON.parse(init.body).video_data;
      const up = [...server.uploads.values()].find((u) => u.liveId === Number(stop[1]));
      if (!up) return error(404, "not_found", "no such live");
      const bytes = serverBytes(server, data.upload_id);
      if (data.size !== bytes.length) return error(409, "size_mismatch", "size differs");
      if (up.length !== bytes.length) return error(409, "upload_incomplete", "length not declared");
      if (data.sha256 !== hex(await crypto.subtle.digest("SHA-256", bytes))) {
        return error(409, "checksum_mismatch", "sha256 differs");
      }
      server.stops.push(data);
      return json(200, { id: up.liveId, live_status: "ended", media_files: [{ id: 1, original_sha256: data.sha256 }] });
    }
    return error(404, "not_found", `${method} ${url.pathname}`);
  };
  return server;
}

/** A `getToken` for the recorder, as a host app would write it: it asks the (fake) server's
 * identity provider for the current token. */
export function getTokenFor(server) {
  return async () => {
    server.getTokenCalls += 1;
    await new Promise((r) => setTimeout(r, 10));
    if (server.getTokenRejects) {
      server.getTokenRejections += 1;
      throw new Error("the host app's token endpoint is down");
    }
    return server.token;
  };
}

export function uninstallFakeServer(server) {
  globalThis.fetch = server.realFetch;
}

export function serverBytes(server, uploadId) {
  const upload = server.uploads.get(uploadId);
  const all = new Uint8Array(upload.parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of upload.parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}
