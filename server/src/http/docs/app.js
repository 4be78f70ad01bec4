// Renders /api/openapi.json: operations with parameters, bodies and status codes, then schemas.
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  Object.assign(node, attrs);
  node.append(...children.filter((c) => c != null));
  return node;
};
const refName = (ref) => ref.split("/").pop();
const typeOf = (schema) => {
  if (!schema) return "";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.oneOf) return schema.oneOf.map(typeOf).join(" | ");
  if (schema.type === "array") return `[${typeOf(schema.items)}]`;
  return [].concat(schema.type || "object").join(" | ");
};
const content = (c) =>
  c ? Object.entries(c).map(([mime, m]) => `${mime} ${typeOf(m.schema)}`).join(", ") : "";

const doc = await (await fetch(new URL("../openapi.json", import.meta.url))).json();
document.getElementById("intro").textContent = `${doc.info.title} ${doc.info.version} (OpenAPI ${doc.openapi}). ${doc.info.description ?? ""}`;
const ops = document.getElementById("ops");
for (const [path, item] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(item)) {
    if (typeof op !== "object" || !op.responses) continue;
    const params = (op.parameters ?? []).map((p) =>
      el("tr", {}, el("td", {}, el("code", { textContent: p.name })), el("td", { textContent: p.in }),
        el("td", { textContent: typeOf(p.schema) + (p.required ? ", required" : "") }),
        el("td", { textContent: p.description ?? "" })));
    const responses = Object.entries(op.responses).map(([status, r]) =>
      el("tr", {}, el("td", {}, el("code", { textContent: status })), el("td", { textContent: r.description ?? "" }),
        el("td", { textContent: content(r.content) })));
    ops.append(el("details", { className: "op" },
      el("summary", {}, el("span", { className: `method ${method}`, textContent: method }),
        el("span", { className: "path", textContent: path }), el("span", { textContent: op.summary ?? "" })),
      el("div", { className: "body" },
        op.description ? el("p", { textContent: op.description }) : null,
        op.security ? el("p", { textContent: "Needs Authorization: Bearer <token>." }) : null,
        params.length ? el("table", {}, el("tr", {}, ...["parameter", "in", "type", ""].map((h) => el("th", { textContent: h }))), ...params) : null,
        op.requestBody ? el("p", { textContent: `Body: ${content(op.requestBody.content)}` }) : null,
        el("table", {}, el("tr", {}, ...["status", "meaning", "body"].map((h) => el("th", { textContent: h }))), ...responses))));
  }
}
const schemas = document.getElementById("schemas");
for (const [name, schema] of Object.entries(doc.components?.schemas ?? {})) {
  const rows = Object.entries(schema.properties ?? {}).map(([prop, s]) =>
    el("tr", {}, el("td", {}, el("code", { textContent: prop })),
      el("td", { textContent: typeOf(s) + ((schema.required ?? []).includes(prop) ? "" : ", optional") }),
      el("td", { textContent: s.description ?? "" })));
  schemas.append(el("details", { className: "op", id: name },
    el("summary", {}, el("span", { className: "path", textContent: name }), el("span", { textContent: schema.description ?? "" })),
    el("div", { className: "body" }, rows.length ? el("table", {}, ...rows) : el("pre", { textContent: JSON.stringify(schema, null, 2) }))));
}
