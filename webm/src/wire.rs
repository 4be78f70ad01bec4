//! The compact binary encoding of saved index states: varints, zigzag, length-prefixed bytes.
//!
//! Written by hand so the format is ours and versioned: a state saved by one
//! build is read by the next, or refused with [`Error::CorruptState`].

use crate::Error;

/// Appends values to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) out: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.out.push(u8::from(value));
    }

    /// LEB128: 7 bits per byte, low bits first.
    pub(crate) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    /// Signed values as zigzag varints, so small negatives stay short.
    pub(crate) fn signed(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    pub(crate) fn option(&mut self, value: Option<u64>) {
        match value {
            Some(value) => {
                self.u8(1);
                self.varint(value);
            }
            None => self.u8(0),
        }
    }

    pub(crate) fn signed_option(&mut self, value: Option<i64>) {
        match value {
            Some(value) => {
                self.u8(1);
                self.signed(value);
            }
            None => self.u8(0),
        }
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

/// Reads what [`Writer`] wrote; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

const CORRUPT: Error = Error::CorruptState("truncated or malformed");

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        let byte = *self.data.get(self.pos).ok_or(CORRUPT)?;
        self.pos += 1;
        Ok(byte)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CORRUPT),
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Error> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7F);
            if shift == 63 && bits > 1 {
                return Err(CORRUPT);
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CORRUPT)
    }

    pub(crate) fn signed(&mut self) -> Result<i64, Error> {
        let value = self.varint()?;
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        u32::try_from(self.varint()?).map_err(|_| CORRUPT)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, Error> {
        i32::try_from(self.signed()?).map_err(|_| CORRUPT)
    }

    pub(crate) fn option(&mut self) -> Result<Option<u64>, Error> {
        Ok(if self.bool()? {
            Some(self.varint()?)
        } else {
            None
        })
    }

    pub(crate) fn signed_option(&mut self) -> Result<Option<i64>, Error> {
        Ok(if self.bool()? {
            Some(self.signed()?)
        } else {
            None
        })
    }

    /// A length-prefixed byte string of at most `cap` bytes.
    pub(crate) fn bytes(&mut self, cap: usize) -> Result<&'a [u8], Error> {
        let len = usize::try_from(self.varint()?).map_err(|_| CORRUPT)?;
        if len > cap {
            return Err(CORRUPT);
        }
        self.raw(len)
    }

    pub(crate) fn raw(&mut self, len: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(len).ok_or(CORRUPT)?;
        let bytes = self.data.get(self.pos..end).ok_or(CORRUPT)?;
        self.pos = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_at_their_edges() {
        let mut w = Writer::default();
        let unsigned = [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX];
        let signed = [0, -1, 1, -64, 64, i64::MIN, i64::MAX];
        for v in unsigned {
            w.varint(v);
        }
        for v in signed {
            w.signed(v);
        }
        w.bytes(b"moov");
        w.option(None);
        w.option(Some(7));
        let mut r = Reader::new(&w.out);
        for v in unsigned {
            assert_eq!(r.varint().unwrap(), v);
        }
        for v in signed {
            assert_eq!(r.signed().unwrap(), v);
        }
        assert_eq!(r.bytes(4).unwrap(), b"moov");
        assert_eq!(r.option().unwrap(), None);
        assert_eq!(r.option().unwrap(), Some(7));
        assert!(r.is_empty());
    }

    #[test]
    fn truncated_or_overlong_input_is_corrupt_not_a_panic() {
        let mut r = Reader::new(&[0x80, 0x80]);
        assert!(matches!(r.varint(), Err(Error::CorruptState(_))));
        let eleven = [0xFF; 11];
        assert!(Reader::new(&eleven).varint().is_err());
        let mut w = Writer::default();
        w.bytes(&[1, 2, 3]);
        assert!(Reader::new(&w.out).bytes(2).is_err());
        assert!(Reader::new(&w.out[..3]).bytes(3).is_err());
    }
}
