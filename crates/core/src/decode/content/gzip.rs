//! gzip (RFC 1952) members: header, raw deflate body, CRC-32 and size trailer.

use flate2::{Crc, Decompress};

use super::deflate::inflate_step;

/// gzip (RFC 1952): header, raw deflate body, CRC-32 and size trailer;
/// members may follow each other.
pub(super) struct Gzip {
    phase: GzPhase,
    header: GzHeader,
    inflate: Decompress,
    crc: Crc,
    trailer: [u8; 8],
    trailer_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GzPhase {
    Header,
    Body,
    Trailer,
    /// A member ended; another may follow.
    BetweenMembers,
    /// Bytes after the last member that are not a member: ignored.
    Trailing,
}

impl Gzip {
    pub(super) fn new() -> Gzip {
        Gzip {
            phase: GzPhase::Header,
            header: GzHeader::default(),
            inflate: Decompress::new(false),
            crc: Crc::new(),
            trailer: [0; 8],
            trailer_len: 0,
        }
    }

    pub(super) fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        loop {
            match self.phase {
                GzPhase::Header => {
                    for (i, &byte) in input.iter().enumerate() {
                        if self.header.feed(byte)? {
                            self.phase = GzPhase::Body;
                            return Ok(i + 1);
                        }
                    }
                    return Ok(input.len());
                }
                GzPhase::Body => {
                    let (consumed, end) = inflate_step(&mut self.inflate, input, out)?;
                    self.crc.update(out);
                    if end {
                        self.phase = GzPhase::Trailer;
                    }
                    if consumed > 0 || !out.is_empty() || !end {
                        return Ok(consumed);
                    }
                }
                GzPhase::Trailer => {
                    let take = (8 - self.trailer_len).min(input.len());
                    self.trailer[self.trailer_len..self.trailer_len + take]
                        .copy_from_slice(&input[..take]);
                    self.trailer_len += take;
                    if self.trailer_len == 8 {
                        self.check_trailer()?;
                        self.phase = GzPhase::BetweenMembers;
                    }
                    return Ok(take);
                }
                GzPhase::BetweenMembers => match input.first() {
                    None => return Ok(0),
                    Some(&GZIP_ID1) => {
                        self.header = GzHeader::default();
                        self.inflate.reset(false);
                        self.crc.reset();
                        self.trailer_len = 0;
                        self.phase = GzPhase::Header;
                    }
                    Some(_) => self.phase = GzPhase::Trailing,
                },
                GzPhase::Trailing => return Ok(input.len()),
            }
        }
    }

    fn check_trailer(&self) -> Result<(), String> {
        let [c0, c1, c2, c3, s0, s1, s2, s3] = self.trailer;
        if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.sum() {
            return Err("CRC-32 mismatch".to_owned());
        }
        // ISIZE is the member's length modulo 2^32.
        if u32::from_le_bytes([s0, s1, s2, s3]) != self.inflate.total_out() as u32 {
            return Err("length mismatch in trailer".to_owned());
        }
        Ok(())
    }

    pub(super) fn is_complete(&self) -> bool {
        matches!(self.phase, GzPhase::BetweenMembers | GzPhase::Trailing)
    }
}

const GZIP_ID1: u8 = 0x1f;
const GZIP_ID2: u8 = 0x8b;
const GZIP_FHCRC: u8 = 0x02;
const GZIP_FEXTRA: u8 = 0x04;
const GZIP_FNAME: u8 = 0x08;
const GZIP_FCOMMENT: u8 = 0x10;
const GZIP_RESERVED: u8 = 0xe0;

/// Byte-at-a-time gzip header parser, so a header split anywhere works.
#[derive(Debug)]
struct GzHeader {
    field: GzField,
    flags: u8,
}

impl Default for GzHeader {
    fn default() -> Self {
        GzHeader {
            field: GzField::Fixed(0),
            flags: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GzField {
    /// Inside the fixed 10-byte part, at this offset.
    Fixed(u8),
    XlenLo,
    XlenHi(u8),
    /// Inside the extra field, with this many bytes left.
    Extra(u16),
    Name,
    Comment,
    Hcrc(u8),
}

/// The optional header fields in stream order, with the flag announcing each.
const GZIP_OPTIONAL: [(u8, GzField); 4] = [
    (GZIP_FEXTRA, GzField::XlenLo),
    (GZIP_FNAME, GzField::Name),
    (GZIP_FCOMMENT, GzField::Comment),
    (GZIP_FHCRC, GzField::Hcrc(0)),
];

impl GzHeader {
    /// Takes one header byte; true when the header is complete.
    fn feed(&mut self, byte: u8) -> Result<bool, String> {
        let next = match self.field {
            GzField::Fixed(0) | GzField::Fixed(1) => {
                let expected = if self.field == GzField::Fixed(0) {
                    GZIP_ID1
                } else {
                    GZIP_ID2
                };
                if byte != expected {
                    return Err("not a gzip stream (bad magic)".to_owned());
                }
                self.advance_fixed()
            }
            GzField::Fixed(2) if byte != 8 => {
                return Err(format!("unknown compression method {byte}"));
            }
            GzField::Fixed(3) if byte & GZIP_RESERVED != 0 => {
                return Err("reserved header flags set".to_owned());
            }
            GzField::Fixed(3) => {
                self.flags = byte;
                self.advance_fixed()
            }
            GzField::Fixed(9) => return Ok(self.optional_from(0)),
            GzField::Fixed(_) => self.advance_fixed(),
            GzField::XlenLo => GzField::XlenHi(byte),
            GzField::XlenHi(lo) => match u16::from_le_bytes([lo, byte]) {
                0 => return Ok(self.optional_from(1)),
                len => GzField::Extra(len),
            },
            GzField::Extra(1) => return Ok(self.optional_from(1)),
            GzField::Extra(left) => GzField::Extra(left - 1),
            GzField::Name if byte == 0 => return Ok(self.optional_from(2)),
            GzField::Comment if byte == 0 => return Ok(self.optional_from(3)),
            GzField::Name | GzField::Comment => self.field,
            GzField::Hcrc(0) => GzField::Hcrc(1),
            GzField::Hcrc(_) => return Ok(true),
        };
        self.field = next;
        Ok(false)
    }

    fn advance_fixed(&self) -> GzField {
        match self.field {
            GzField::Fixed(n) => GzField::Fixed(n + 1),
            other => other,
        }
    }

    /// Moves to the first flagged optional field at or after `index` in
    /// [`GZIP_OPTIONAL`]; true when none is left and the header is done.
    fn optional_from(&mut self, index: usize) -> bool {
        let next = GZIP_OPTIONAL
            .iter()
            .skip(index)
            .find(|(flag, _)| self.flags & flag != 0);
        match next {
            Some(&(_, field)) => {
                self.field = field;
                false
            }
            None => true,
        }
    }
}
