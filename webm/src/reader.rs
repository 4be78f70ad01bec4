//! Streaming element reader for MediaRecorder-shaped WebM.
//!
//! Elements are read header by header from a [`Source`]; payloads are peeked
//! only as far as needed (block headers) and otherwise skipped. Every size is
//! checked against the enclosing limit before it is used, so no declared
//! length can cause a large allocation or a read past the end.

use std::io::{self, Read, Seek};

use crate::block::{parse_block, BlockHeader};
use crate::ebml::{self, read_header, read_uint, Header, Vint, MAX_HEADER_LEN};
use crate::source::Source;

/// Longest block prefix read to decode lace headers; real lace headers are a few hundred bytes.
pub const BLOCK_PREFIX_LEN: usize = 64 << 10;

/// An element header found at an absolute position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Absolute offset of the element's first id byte.
    pub start: u64,
    /// Element id.
    pub id: u32,
    /// Data size, `None` when unknown.
    pub size: Option<u64>,
    /// Bytes of id plus size.
    pub header_len: u64,
}

impl Head {
    /// Absolute offset of the element's data.
    pub fn data_start(&self) -> u64 {
        self.start + self.header_len
    }

    /// Absolute end of a known-size element, `None` for unknown sizes or overflow.
    pub fn end(&self) -> Option<u64> {
        self.data_start().checked_add(self.size?)
    }
}

/// Result of looking for an element header at the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRead {
    /// A complete header.
    Head(Head),
    /// The input (or the enclosing limit) ends before a header does.
    End,
    /// The bytes cannot be an element header.
    Invalid,
}

/// Reads the element header at the cursor without consuming it; `limit` bounds the bytes looked at.
pub fn read_head<R: Read + Seek>(src: &mut Source<R>, limit: u64) -> io::Result<HeadRead> {
    let start = src.position();
    let window = limit.saturating_sub(start).min(MAX_HEADER_LEN as u64) as usize;
    let bytes = src.peek(window)?;
    Ok(match read_header(bytes) {
        Vint::Done(Header { id, size, len }, _) => HeadRead::Head(Head {
            start,
            id,
            size,
            header_len: len as u64,
        }),
        Vint::NeedMore => HeadRead::End,
        Vint::Invalid => HeadRead::Invalid,
    })
}

/// Whether `id` may appear directly inside a Cluster; anything else ends an unknown-size Cluster.
pub fn is_cluster_child(id: u32) -> bool {
    matches!(
        id,
        ebml::ID_TIMESTAMP
            | ebml::ID_SILENTTRACKS
            | ebml::ID_POSITION
            | ebml::ID_PREVSIZE
            | ebml::ID_SIMPLEBLOCK
            | ebml::ID_BLOCKGROUP
            | ebml::ID_ENCRYPTEDBLOCK
            | ebml::ID_VOID
            | ebml::ID_CRC32
    )
}

/// Whether `id` is a Segment child (level 1); these end unknown-size level-1 elements.
pub fn is_top_level(id: u32) -> bool {
    matches!(
        id,
        ebml::ID_SEEKHEAD
            | ebml::ID_INFO
            | ebml::ID_TRACKS
            | ebml::ID_CUES
            | ebml::ID_CLUSTER
            | ebml::ID_CHAPTERS
            | ebml::ID_TAGS
            | ebml::ID_ATTACHMENTS
            | ebml::ID_SEGMENT
            | ebml::ID_EBML
    )
}

/// A block found in a cluster, with what its container said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// Decoded block header.
    pub header: BlockHeader,
    /// Keyframe: the SimpleBlock flag, or a Block without ReferenceBlock.
    pub keyframe: bool,
    /// BlockDuration of a BlockGroup, in TimestampScale units.
    pub duration: Option<u64>,
}

/// What a cluster child is, as far as finalizing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    /// The cluster's Timestamp.
    Timestamp(u64),
    /// A SimpleBlock or BlockGroup.
    Block(BlockInfo),
    /// Copied without interpretation (SilentTracks, EncryptedBlock).
    Opaque,
    /// Left out of the output (Void, CRC-32, Position, PrevSize, broken blocks, strays).
    Dropped,
}

/// One child of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterChild {
    /// Absolute offset of the child's header.
    pub start: u64,
    /// Whole child length, header included.
    pub len: u64,
    /// What it is.
    pub kind: ChildKind,
}

impl ClusterChild {
    /// Whether the child is copied to the output.
    pub fn keep(&self) -> bool {
        !matches!(self.kind, ChildKind::Dropped)
    }
}

/// A step of walking a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterStep {
    /// The next child.
    Child(ClusterChild),
    /// The cluster ended cleanly at this absolute position.
    End(u64),
    /// The data at this position is truncated or corrupt: nothing from here on is usable.
    Broken(u64),
}

/// Walks the children of one cluster; both passes use it so they agree on every byte.
pub struct ClusterWalker {
    pos: u64,
    limit: u64,
    known_size: bool,
    seen_block: bool,
    seen_timestamp: bool,
}

impl ClusterWalker {
    /// Starts at the cluster's data; `limit` is where it must end (its size, the segment's, or EOF).
    pub fn new(data_start: u64, limit: u64, known_size: bool) -> Self {
        Self {
            pos: data_start,
            limit,
            known_size,
            seen_block: false,
            seen_timestamp: false,
        }
    }

    /// Reads the next child; the source's cursor is left anywhere, callers seek to `start`.
    pub fn next<R: Read + Seek>(&mut self, src: &mut Source<R>) -> io::Result<ClusterStep> {
        if self.pos >= self.limit {
            return Ok(ClusterStep::End(self.pos));
        }
        src.seek_to(self.pos)?;
        let head = match read_head(src, self.limit)? {
            HeadRead::Head(head) => head,
            HeadRead::End | HeadRead::Invalid => return Ok(ClusterStep::Broken(self.pos)),
        };
        if !self.known_size && !is_cluster_child(head.id) {
            return Ok(ClusterStep::End(self.pos));
        }
        let Some(end) = head.end().filter(|&end| end <= self.limit) else {
            return Ok(ClusterStep::Broken(self.pos));
        };
        let kind = self.classify(src, &head, end)?;
        self.pos = end;
        Ok(ClusterStep::Child(ClusterChild {
            start: head.start,
            len: end - head.start,
            kind,
        }))
    }

    /// Decides what a complete child is and whether it is kept.
    fn classify<R: Read + Seek>(
        &mut self,
        src: &mut Source<R>,
        head: &Head,
        end: u64,
    ) -> io::Result<ChildKind> {
        let size = end - head.data_start();
        let mut rules = ChildRules {
            seen_block: self.seen_block,
            seen_timestamp: self.seen_timestamp,
        };
        // A BlockGroup is read child by child from the source, not peeked whole: it may be
        // larger than the source's buffer.
        let kind = if head.id == ebml::ID_BLOCKGROUP {
            let kind = match read_block_group(src, head.data_start(), end)? {
                Some(info) => ChildKind::Block(info),
                None => ChildKind::Dropped,
            };
            rules.saw(&kind);
            kind
        } else {
            let need = data_to_classify(head.id, size);
            src.seek_to(head.data_start())?;
            let data = src.peek(usize::try_from(need).unwrap_or(usize::MAX))?;
            rules.classify(head.id, size, data)
        };
        self.seen_block = rules.seen_block;
        self.seen_timestamp = rules.seen_timestamp;
        Ok(kind)
    }
}

/// How many of a cluster child's first data bytes decide what it is (all of a BlockGroup's).
pub fn data_to_classify(id: u32, size: u64) -> u64 {
    match id {
        ebml::ID_TIMESTAMP => size.min(9),
        ebml::ID_SIMPLEBLOCK => size.min(BLOCK_PREFIX_LEN as u64),
        ebml::ID_BLOCKGROUP => size,
        _ => 0,
    }
}

/// What a cluster's earlier children decide about the next ones: a Timestamp counts only
/// before any block, and only the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildRules {
    /// A block was kept.
    pub seen_block: bool,
    /// The cluster's Timestamp was read.
    pub seen_timestamp: bool,
}

impl ChildRules {
    /// Classifies a child of `size` data bytes from the first [`data_to_classify`] of them.
    pub fn classify(&mut self, id: u32, size: u64, data: &[u8]) -> ChildKind {
        let kind = match id {
            ebml::ID_TIMESTAMP if !self.seen_block && !self.seen_timestamp => {
                match read_uint(&data[..data.len().min(9)]) {
                    Some(ts) if size <= 8 => ChildKind::Timestamp(ts),
                    _ => ChildKind::Dropped,
                }
            }
            ebml::ID_SIMPLEBLOCK => match parse_block(data, size) {
                // A lace header longer than the prefix (NeedMore) is as unusable as a malformed one.
                Ok(header) => ChildKind::Block(BlockInfo {
                    header,
                    keyframe: header.keyframe,
                    duration: None,
                }),
                Err(_) => ChildKind::Dropped,
            },
            ebml::ID_BLOCKGROUP => match block_group_in(data) {
                Some(info) => ChildKind::Block(info),
                None => ChildKind::Dropped,
            },
            ebml::ID_SILENTTRACKS | ebml::ID_ENCRYPTEDBLOCK => ChildKind::Opaque,
            _ => ChildKind::Dropped,
        };
        self.saw(&kind);
        kind
    }

    fn saw(&mut self, kind: &ChildKind) {
        match kind {
            ChildKind::Timestamp(_) => self.seen_timestamp = true,
            ChildKind::Block(_) => self.seen_block = true,
            ChildKind::Opaque | ChildKind::Dropped => {}
        }
    }
}

/// A BlockGroup's Block, BlockDuration and ReferenceBlock from its whole data in memory; the
/// same rules as [`read_block_group`], which reads them from a source.
fn block_group_in(data: &[u8]) -> Option<BlockInfo> {
    let mut pos = 0usize;
    let mut header = None;
    let mut duration = None;
    let mut referenced = false;
    while pos < data.len() {
        let Vint::Done(child, len) = read_header(&data[pos..]) else {
            return None;
        };
        let size = usize::try_from(child.size?).ok()?;
        let body = data.get(pos + len..)?.get(..size)?;
        match child.id {
            ebml::ID_BLOCK if header.is_none() => {
                let prefix = &body[..body.len().min(BLOCK_PREFIX_LEN)];
                header = Some(parse_block(prefix, size as u64).ok()?);
            }
            ebml::ID_BLOCKDURATION if size <= 8 => duration = read_uint(body),
            ebml::ID_REFERENCEBLOCK => referenced = true,
            _ => {}
        }
        pos += len + size;
    }
    header.map(|header| BlockInfo {
        header,
        keyframe: !referenced,
        duration,
    })
}

/// Decodes the header of the block whose `size` data bytes start at the cursor.
fn read_block_header<R: Read + Seek>(
    src: &mut Source<R>,
    size: u64,
) -> io::Result<Option<BlockHeader>> {
    let prefix = src.peek(size.min(BLOCK_PREFIX_LEN as u64) as usize)?;
    // A lace header longer than the prefix (NeedMore) is as unusable as a malformed one.
    Ok(parse_block(prefix, size).ok())
}

/// Reads a BlockGroup's Block, BlockDuration and ReferenceBlock; `None` if it has no valid Block.
fn read_block_group<R: Read + Seek>(
    src: &mut Source<R>,
    data_start: u64,
    end: u64,
) -> io::Result<Option<BlockInfo>> {
    let mut pos = data_start;
    let mut header = None;
    let mut duration = None;
    let mut referenced = false;
    while pos < end {
        src.seek_to(pos)?;
        let HeadRead::Head(head) = read_head(src, end)? else {
            return Ok(None);
        };
        let Some(child_end) = head.end().filter(|&e| e <= end) else {
            return Ok(None);
        };
        let size = child_end - head.data_start();
        src.skip(head.header_len)?;
        match head.id {
            ebml::ID_BLOCK if header.is_none() => {
                header = read_block_header(src, size)?;
                if header.is_none() {
                    return Ok(None);
                }
            }
            ebml::ID_BLOCKDURATION if size <= 8 => {
                duration = read_uint(src.peek(size as usize)?);
            }
            ebml::ID_REFERENCEBLOCK => referenced = true,
            _ => {}
        }
        pos = child_end;
    }
    Ok(header.map(|header| BlockInfo {
        header,
        keyframe: !referenced,
        duration,
    }))
}

/// Reads the children of a level-1 master (Info, Tracks) into memory.
///
/// Unknown sizes end at the next level-1 id. Returns `None` when the element
/// is truncated, malformed, or larger than `cap`.
pub fn read_master_body<R: Read + Seek>(
    src: &mut Source<R>,
    head: &Head,
    limit: u64,
    cap: u64,
) -> io::Result<Option<(Vec<u8>, u64)>> {
    if let Some(end) = head.end() {
        if end > limit || end - head.data_start() > cap {
            return Ok(None);
        }
        src.seek_to(head.data_start())?;
        let body = src.read_vec((end - head.data_start()) as usize)?;
        return Ok(Some((body, end)));
    }
    let mut pos = head.data_start();
    loop {
        src.seek_to(pos)?;
        let child = match read_head(src, limit)? {
            HeadRead::Head(child) if !is_top_level(child.id) => child,
            HeadRead::Head(_) => break,
            HeadRead::End if pos == limit => break,
            HeadRead::End | HeadRead::Invalid => return Ok(None),
        };
        match child.end() {
            Some(end) if end <= limit && end - head.data_start() <= cap => pos = end,
            _ => return Ok(None),
        }
    }
    src.seek_to(head.data_start())?;
    let body = src.read_vec((pos - head.data_start()) as usize)?;
    Ok(Some((body, pos)))
}

/// Finds where an unknown-size level-1 element we do not keep ends: at the next level-1 id.
pub fn skip_unknown_size<R: Read + Seek>(
    src: &mut Source<R>,
    head: &Head,
    limit: u64,
) -> io::Result<Option<u64>> {
    let mut pos = head.data_start();
    loop {
        src.seek_to(pos)?;
        match read_head(src, limit)? {
            HeadRead::Head(child) if !is_top_level(child.id) => match child.end() {
                Some(end) if end <= limit => pos = end,
                _ => return Ok(None),
            },
            HeadRead::Head(_) => return Ok(Some(pos)),
            HeadRead::End if pos == limit => return Ok(Some(pos)),
            HeadRead::End | HeadRead::Invalid => return Ok(None),
        }
    }
}
