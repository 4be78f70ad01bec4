//! A media stored as a layout: new bytes (the finalizer's head, a few patches, a tail) and
//! ranges of the upload's own bytes, in order, read as one file without copying the upload.
//!
//! A layout media's key is `<stem>.layout`; beside it, `<stem>.head` holds the new bytes, and
//! the upload's bytes are `<stem>.data` on the local disk (a hard link to the upload's file,
//! made at the stop: the upload's name can go, its bytes stay the media's) or, on an object
//! store, the upload's own objects (named by the layout, owned by the media until the
//! layout is assembled into one object, `storage/object.rs`). The `.layout` file itself is
//! a short text: a version line, the container's file extension, the upload (object stores),
//! then one line per piece.

use std::io::{self, Read, Seek, SeekFrom};

use super::{ReadSeek, StorageError};
use crate::domain::UploadId;

/// Extension of a layout's key (its manifest).
pub const LAYOUT_EXTENSION: &str = "layout";
/// Extension of the file holding a layout's new bytes.
pub const HEAD_EXTENSION: &str = "head";
/// Extension of the local hard link to the upload's bytes.
pub const DATA_EXTENSION: &str = "data";
/// First line of a layout file.
const MAGIC: &str = "livekeep-layout 1";
/// Largest layout file read: a line per piece, a few pieces per fragment at worst.
pub const MAX_LAYOUT_BYTES: u64 = 16 << 20;

/// Where a piece's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// In the layout's head file.
    Head,
    /// In the upload's bytes.
    Upload,
}

/// A range of bytes of the media, taken from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Where they are.
    pub source: Source,
    /// Offset in the source.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
}

/// What a layout file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLayout {
    /// The container's file extension (`webm`, `mp4`): what an assembled object is named.
    pub extension: String,
    /// The upload whose objects hold the upload pieces (object stores; `None` on local disk,
    /// where they are the `.data` link).
    pub upload: Option<UploadId>,
    /// The media's bytes, in order.
    pub pieces: Vec<Piece>,
}

impl StoredLayout {
    /// Bytes of the media.
    pub fn len(&self) -> u64 {
        self.pieces.iter().map(|piece| piece.len).sum()
    }

    /// Whether the media is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The layout file's text.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{MAGIC}\nextension {}\n", self.extension);
        if let Some(upload) = &self.upload {
            out.push_str(&format!("upload {upload}\n"));
        }
        for piece in &self.pieces {
            let source = match piece.source {
                Source::Head => "head",
                Source::Upload => "upload",
            };
            out.push_str(&format!("{source} {} {}\n", piece.offset, piece.len));
        }
        out.into_bytes()
    }

    /// Reads a layout file back.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "a layout file is not UTF-8")?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err("not a layout file of this version".to_owned());
        }
        let mut layout = Self {
            extension: String::new(),
            upload: None,
            pieces: Vec::new(),
        };
        for line in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            let number = |i: usize| -> Result<u64, String> {
                fields
                    .get(i)
                    .and_then(|f| f.parse().ok())
                    .ok_or_else(|| format!("a bad layout line: {line:?}"))
            };
            match fields.as_slice() {
                ["extension", ext] if ext.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    layout.extension = (*ext).to_owned();
                }
                ["upload", id] => {
                    layout.upload = Some(UploadId::parse(id).map_err(|e| e.to_string())?);
                }
                ["head", _, _] | ["upload", _, _] => {
                    let source = if fields[0] == "head" {
                        Source::Head
                    } else {
                        Source::Upload
                    };
                    let (offset, len) = (number(1)?, number(2)?);
                    offset
                        .checked_add(len)
                        .ok_or_else(|| format!("a piece past the end: {line:?}"))?;
                    layout.pieces.push(Piece {
                        source,
                        offset,
                        len,
                    });
                }
                _ => return Err(format!("a bad layout line: {line:?}")),
            }
        }
        if layout.extension.is_empty() {
            return Err("a layout without its extension".to_owned());
        }
        Ok(layout)
    }
}

/// The stem of a key (`<stem>.<extension>`).
pub fn stem(key: &str) -> &str {
    key.split('.').next().unwrap_or(key)
}

/// Whether `key` names a layout media.
pub fn is_layout(key: &str) -> bool {
    key.rsplit_once('.')
        .is_some_and(|(_, extension)| extension == LAYOUT_EXTENSION)
}

/// The names stored beside a layout key (its head, and on local disk its data link).
pub fn companions(key: &str) -> Vec<String> {
    if !is_layout(key) {
        return Vec::new();
    }
    let stem = stem(key);
    [HEAD_EXTENSION, DATA_EXTENSION]
        .iter()
        .map(|extension| format!("{stem}.{extension}"))
        .collect()
}

/// Whether `name` is a layout's companion, and of which layout key.
pub fn companion_of(name: &str) -> Option<String> {
    let (stem, extension) = name.split_once('.')?;
    [HEAD_EXTENSION, DATA_EXTENSION]
        .contains(&extension)
        .then(|| format!("{stem}.{LAYOUT_EXTENSION}"))
}

/// A layout read as one byte sequence over its head and the upload's bytes.
pub struct LayoutReader {
    head: Box<dyn ReadSeek>,
    upload: Box<dyn ReadSeek>,
    pieces: Vec<Piece>,
    /// Where each piece starts in the media.
    starts: Vec<u64>,
    len: u64,
    pos: u64,
}

impl LayoutReader {
    /// Reads `layout` with its head file and the upload's bytes.
    pub fn new(layout: &StoredLayout, head: Box<dyn ReadSeek>, upload: Box<dyn ReadSeek>) -> Self {
        let mut starts = Vec::with_capacity(layout.pieces.len());
        let mut at = 0;
        for piece in &layout.pieces {
            starts.push(at);
            at += piece.len;
        }
        Self {
            head,
            upload,
            pieces: layout.pieces.clone(),
            starts,
            len: at,
            pos: 0,
        }
    }
}

impl Read for LayoutReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let i = self.starts.partition_point(|&start| start <= self.pos) - 1;
        let piece = self.pieces[i];
        let within = self.pos - self.starts[i];
        let want = usize::try_from(piece.len - within)
            .unwrap_or(usize::MAX)
            .min(out.len());
        let source = match piece.source {
            Source::Head => &mut self.head,
            Source::Upload => &mut self.upload,
        };
        source.seek(SeekFrom::Start(piece.offset + within))?;
        let n = source.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a layout piece is shorter than it says",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for LayoutReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// A layout file that cannot be read, as a storage error.
pub fn unreadable(key: &str, why: String) -> StorageError {
    StorageError::Io {
        context: format!("reading the layout {key}"),
        source: io::Error::new(io::ErrorKind::InvalidData, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn layout() -> StoredLayout {
        StoredLayout {
            extension: "mp4".to_owned(),
            upload: Some(UploadId::parse("0123456789abcdef0123456789abcdef").unwrap()),
            pieces: vec![
                Piece {
                    source: Source::Head,
                    offset: 0,
                    len: 4,
                },
                Piece {
                    source: Source::Upload,
                    offset: 10,
                    len: 5,
                },
                Piece {
                    source: Source::Head,
                    offset: 4,
                    len: 2,
                },
                Piece {
                    source: Source::Upload,
                    offset: 17,
                    len: 3,
                },
            ],
        }
    }

    #[test]
    fn a_layout_file_reads_back_and_a_damaged_one_is_refused() {
        let layout = layout();
        assert_eq!(StoredLayout::parse(&layout.encode()), Ok(layout.clone()));
        assert_eq!(layout.len(), 14);
        let text = String::from_utf8(layout.encode()).unwrap();
        for bad in [
            text.replace("livekeep-layout 1", "livekeep-layout 9"),
            text.replace("upload 10 5", "upload ten 5"),
            text.replace("extension mp4\n", ""),
            format!("{text}head 18446744073709551615 2\n"),
        ] {
            assert!(StoredLayout::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_reader_is_the_pieces_in_order_wherever_it_seeks() {
        let head = Cursor::new(b"HEADpp".to_vec());
        let upload = Cursor::new((0..30u8).collect::<Vec<_>>());
        let mut reader = LayoutReader::new(&layout(), Box::new(head), Box::new(upload));
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        let expected = [&b"HEAD"[..], &[10, 11, 12, 13, 14], b"pp", &[17, 18, 19]].concat();
        assert_eq!(all, expected);
        for start in 0..expected.len() {
            reader.seek(SeekFrom::Start(start as u64)).unwrap();
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, expected[start..], "from {start}");
        }
        assert_eq!(reader.seek(SeekFrom::End(0)).unwrap(), 14);
    }

    #[test]
    fn companions_belong_to_their_layout_only() {
        let stem = "0123456789abcdef0123456789abcdef";
        let key = format!("{stem}.layout");
        assert!(is_layout(&key) && !is_layout(&format!("{stem}.webm")));
        assert_eq!(
            companions(&key),
            [format!("{stem}.head"), format!("{stem}.data")]
        );
        assert_eq!(companion_of(&format!("{stem}.data")), Some(key));
        assert_eq!(companion_of(&format!("{stem}.webm")), None);
    }
}
