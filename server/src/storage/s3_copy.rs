//! A layout assembled into one S3 object by server-side copies: a multipart upload whose parts
//! are `UploadPartCopy`s of the upload's own objects, behind parts that carry the new bytes.
//!
//! `object_store` has no `UploadPartCopy`, so the five requests of a multipart upload are
//! made here, signed with `object_store`'s own SigV4 signer ([`AwsAuthorizer`]) and the
//! credentials of the configured store, and sent through its HTTP client.
//!
//! S3 parts are at least 5 MiB, except the last. The upload's objects are compacted into parts
//! of that size (`uploads/compaction.rs`), so most become one `UploadPartCopy` each. New bytes
//! (the head, an MP4's moved base offsets, a tail) and objects smaller than a part (pieces not
//! compacted yet) are fetched and uploaded, topped up from the next object to reach 5 MiB: a
//! few MiB re-sent for the head, whatever the recording's length.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use object_store::{
    aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer},
    client::{
        ClientConfigKey, ClientOptions, HttpClient, HttpConnector, HttpRequest, ReqwestConnector,
    },
    path::Path,
    ObjectStore, ObjectStoreExt,
};
use reqwest_os::{
    header::{HeaderName, HeaderValue},
    Method,
};
use sha2::{Digest, Sha256};

use super::{
    layout::{Source, StoredLayout},
    StorageError,
};

/// S3's smallest part but the last.
const MIN_PART: u64 = 5 << 20;
/// S3's most parts in one upload.
const MAX_PARTS: usize = 10_000;
/// Parts sent or copied at once.
const CONCURRENCY: usize = 8;

/// One object holding a range of the upload.
#[derive(Debug, Clone)]
pub struct UploadObject {
    /// First upload byte it holds.
    pub start: u64,
    /// End of what it holds.
    pub end: u64,
    /// Where it is.
    pub location: Path,
}

/// Bytes of one object: `len` from `offset`.
#[derive(Debug, Clone, PartialEq)]
struct Range {
    location: Path,
    offset: u64,
    len: u64,
}

/// A part of the assembled object.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Copied by the store from one object.
    Copy(Range),
    /// These ranges, fetched and uploaded as one part.
    Send(Vec<Range>),
}

/// Makes the requests of a multipart upload with copies, for one bucket.
#[derive(Debug)]
pub struct S3Copier {
    s3: AmazonS3,
    client: HttpClient,
    /// `https://bucket.s3.region.amazonaws.com` or `http://endpoint/bucket`.
    bucket_endpoint: String,
    bucket: String,
    region: String,
}

/// An S3 request that failed, as a storage error.
fn failed(what: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        context: what.to_owned(),
        source: std::io::Error::other(why.to_string()),
    }
}

/// Percent-encodes an object path for a URL, keeping its `/`.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The text of the first `<tag>` element of an S3 XML answer, unescaped.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// `text` escaped for an XML element.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The object's bytes the layout's pieces name, in order, as ranges of single objects.
fn ranges(
    layout: &StoredLayout,
    head: &Path,
    chain: &[UploadObject],
) -> Result<Vec<Range>, String> {
    let mut out = Vec::new();
    for piece in &layout.pieces {
        match piece.source {
            Source::Head => out.push(Range {
                location: head.clone(),
                offset: piece.offset,
                len: piece.len,
            }),
            Source::Upload => {
                let (mut at, end) = (piece.offset, piece.offset + piece.len);
                while at < end {
                    let object = chain
                        .iter()
                        .find(|o| o.start <= at && at < o.end)
                        .ok_or_else(|| format!("no object of the upload holds byte {at}"))?;
                    let len = end.min(object.end) - at;
                    out.push(Range {
                        location: object.location.clone(),
                        offset: at - object.start,
                        len,
                    });
                    at += len;
                }
            }
        }
    }
    Ok(out)
}

/// The parts of the assembled object: a range of at least [`MIN_PART`] is copied; anything
/// smaller is sent, with what follows it up to [`MIN_PART`].
fn plan(ranges: Vec<Range>) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut pending: Vec<Range> = Vec::new();
    let mut pending_len = 0;
    for range in ranges {
        if range.len >= MIN_PART && pending_len == 0 {
            parts.push(Part::Copy(range));
            continue;
        }
        if range.len >= MIN_PART {
            // Top up what is pending from this object if what is left is still a part.
            let need = MIN_PART - pending_len.min(MIN_PART);
            if range.len - need >= MIN_PART {
                if need > 0 {
                    pending.push(Range {
                        len: need,
                        ..range.clone()
                    });
                }
                parts.push(Part::Send(std::mem::take(&mut pending)));
                pending_len = 0;
                parts.push(Part::Copy(Range {
                    offset: range.offset + need,
                    len: range.len - need,
                    ..range
                }));
                continue;
            }
        }
        pending_len += range.len;
        pending.push(range);
        if pending_len >= MIN_PART {
            parts.push(Part::Send(std::mem::take(&mut pending)));
            pending_len = 0;
        }
    }
    if !pending.is_empty() {
        parts.push(Part::Send(pending));
    }
    parts
}

impl S3Copier {
    /// A copier for `bucket` as `builder` configures it (the same endpoint, region,
    /// credentials and client options as `s3`, built from it).
    pub fn new(
        builder: &AmazonS3Builder,
        s3: AmazonS3,
        bucket: &str,
    ) -> Result<Self, StorageError> {
        let config = |key: AmazonS3ConfigKey| builder.get_config_value(&key);
        let bucket = bucket.to_owned();
        let region = config(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_owned());
        let virtual_hosted = config(AmazonS3ConfigKey::VirtualHostedStyleRequest)
            .is_some_and(|value| value == "true");
        let bucket_endpoint = match (config(AmazonS3ConfigKey::Endpoint), virtual_hosted) {
            (Some(endpoint), true) => endpoint,
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let allow_http = config(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|value| value == "true");
        let client = ReqwestConnector::default()
            .connect(&ClientOptions::new().with_allow_http(allow_http))
            .map_err(|err| failed("configuring S3 copies", err))?;
        Ok(Self {
            s3,
            client,
            bucket_endpoint,
            bucket,
            region,
        })
    }

    /// One signed request on `location` (`query` after its `?`); its answer's headers and body.
    async fn request(
        &self,
        method: Method,
        location: &Path,
        query: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(reqwest_os::header::HeaderMap, String), StorageError> {
        let what = format!("{method} {location}?{query}");
        let url = format!(
            "{}/{}?{query}",
            self.bucket_endpoint,
            encode_path(location.as_ref())
        );
        let digest = Sha256::digest(&body);
        let mut request = HttpRequest::new(body.into());
        *request.method_mut() = method;
        *request.uri_mut() = url.parse().map_err(|err| failed(&what, err))?;
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|err| failed(&what, err))?;
            request
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
        let credential = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(|err| failed(&what, err))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, Some(digest.as_slice()))
            .map_err(|err| failed(&what, err))?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|err| failed(&what, err))?;
        let (parts, body) = response.into_parts();
        let body = body.bytes().await.map_err(|err| failed(&what, err))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        // An S3 error may come with 200 (CompleteMultipartUpload, UploadPartCopy).
        if !parts.status.is_success() || text.contains("<Error>") {
            return Err(failed(&what, format!("{}: {text}", parts.status)));
        }
        Ok((parts.headers, text))
    }

    /// Writes `layout` (its head object at `head`, the upload's objects `chain`) as the object
    /// `target` of `store`, by a multipart upload of copies and sent parts.
    pub async fn assemble(
        &self,
        store: &Arc<dyn ObjectStore>,
        layout: &StoredLayout,
        head: &Path,
        chain: &[UploadObject],
        target: &Path,
    ) -> Result<(), StorageError> {
        let ranges = ranges(layout, head, chain).map_err(|why| failed("planning a copy", why))?;
        let parts = plan(ranges);
        if parts.len() > MAX_PARTS {
            return Err(failed("planning a copy", "more parts than S3 allows"));
        }
        let (_, created) = self
            .request(Method::POST, target, "uploads", &[], Bytes::new())
            .await?;
        let upload_id = xml_value(&created, "UploadId")
            .ok_or_else(|| failed("starting a multipart upload", "no UploadId"))?;
        let sent = self.send_parts(store, target, &upload_id, parts).await;
        let completed = match sent {
            Ok(etags) => self.complete(target, &upload_id, &etags).await,
            Err(err) => Err(err),
        };
        if completed.is_err() {
            // Parts already stored would linger (and be billed) until a lifecycle rule.
            let query = format!("uploadId={}", encode_path(&upload_id));
            let _ = self
                .request(Method::DELETE, target, &query, &[], Bytes::new())
                .await;
        }
        completed
    }

    async fn send_parts(
        &self,
        store: &Arc<dyn ObjectStore>,
        target: &Path,
        upload_id: &str,
        parts: Vec<Part>,
    ) -> Result<Vec<String>, StorageError> {
        let etags: Vec<(usize, String)> = stream::iter(parts.into_iter().enumerate())
            .map(|(i, part)| async move {
                let query = format!("partNumber={}&uploadId={}", i + 1, encode_path(upload_id));
                let etag = match part {
                    Part::Copy(range) => {
                        let source =
                            format!("/{}/{}", self.bucket, encode_path(range.location.as_ref()));
                        let bytes =
                            format!("bytes={}-{}", range.offset, range.offset + range.len - 1);
                        let headers = [
                            ("x-amz-copy-source", source),
                            ("x-amz-copy-source-range", bytes),
                        ];
                        let (_, body) = self
                            .request(Method::PUT, target, &query, &headers, Bytes::new())
                            .await?;
                        xml_value(&body, "ETag")
                            .ok_or_else(|| failed("copying a part", "no ETag"))?
                    }
                    Part::Send(ranges) => {
                        let mut bytes = Vec::new();
                        for range in ranges {
                            let got = store
                                .get_range(&range.location, range.offset..range.offset + range.len)
                                .await
                                .map_err(|err| failed("reading a part to send", err))?;
                            bytes.extend_from_slice(&got);
                        }
                        let (headers, _) = self
                            .request(Method::PUT, target, &query, &[], Bytes::from(bytes))
                            .await?;
                        headers
                            .get("etag")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                            .ok_or_else(|| failed("sending a part", "no ETag"))?
                    }
                };
                Ok::<_, StorageError>((i, etag))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut etags = etags;
        etags.sort_by_key(|(i, _)| *i);
        Ok(etags.into_iter().map(|(_, etag)| etag).collect())
    }

    async fn complete(
        &self,
        target: &Path,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), StorageError> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                xml_escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let query = format!("uploadId={}", encode_path(upload_id));
        self.request(
            Method::POST,
            target,
            &query,
            &[("content-type", "application/xml".to_owned())],
            Bytes::from(body),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(name: &str, offset: u64, len: u64) -> Range {
        Range {
            location: Path::from(name),
            offset,
            len,
        }
    }

    #[test]
    fn big_ranges_are_copied_and_the_head_is_topped_up_to_a_part() {
        const MIB: u64 = 1 << 20;
        let parts = plan(vec![
            range("head", 0, 4096),
            range("a", 0, 6 * MIB),
            range("b", 0, 12 * MIB),
            range("c", 0, MIB),
            range("d", 0, 2 * MIB),
        ]);
        // The head and the first object are sent together (what is left of it is not a part);
        // the second object is copied whole; the small tail objects make the last part.
        assert_eq!(
            parts,
            vec![
                Part::Send(vec![range("head", 0, 4096), range("a", 0, 6 * MIB)]),
                Part::Copy(range("b", 0, 12 * MIB)),
                Part::Send(vec![range("c", 0, MIB), range("d", 0, 2 * MIB)]),
            ]
        );
        let parts = plan(vec![range("head", 0, 4096), range("a", 0, 20 * MIB)]);
        assert_eq!(
            parts,
            vec![
                Part::Send(vec![range("head", 0, 4096), range("a", 0, 5 * MIB - 4096)]),
                Part::Copy(range("a", 5 * MIB - 4096, 15 * MIB + 4096)),
            ]
        );
        // Every part but the last reaches S3's minimum.
        let many: Vec<Range> = (0..50).map(|i| range("p", i * 300_000, 300_000)).collect();
        let parts = plan(many);
        for part in &parts[..parts.len() - 1] {
            let Part::Send(ranges) = part else {
                panic!("small pieces are sent")
            };
            assert!(ranges.iter().map(|r| r.len).sum::<u64>() >= MIN_PART);
        }
    }

    #[test]
    fn xml_values_are_unescaped_and_etags_escaped() {
        let body = "<CopyPartResult><ETag>&quot;abc&quot;</ETag></CopyPartResult>";
        assert_eq!(xml_value(body, "ETag").as_deref(), Some("\"abc\""));
        assert_eq!(xml_escape("\"abc\""), "&quot;abc&quot;");
        assert_eq!(
            encode_path("media/files/ab c.mp4"),
            "media/files/ab%20c.mp4"
        );
    }
}
