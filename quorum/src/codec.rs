//! The canonical binary encoding of a [`Ballot`], version 1.
//!
//! ```text
//! ballot  = "QGB" version:u8(=1) agent:str8 seq:u64 issued_at:u64 valid_for_ms:u32
//!           digest:[32] count:u32 observation*count
//! observation = check:str8 status:u8 reason:str8 latency_ms:u32 observed_at:u64
//!               lag_flag:u8 [lag_ms:u64 if lag_flag=1] detail:str16
//! strN    = length:uN bytes           (all integers big-endian)
//! ```
//!
//! Canonical means one byte string per ballot: observations strictly ascending by check, no
//! trailing bytes, flags only 0 or 1, every string a valid token. The decoder rejects anything
//! else, so the signature covers exactly one meaning. The decoder never panics, bounds every
//! length by the bytes actually remaining, so what it allocates is bounded by a small constant
//! multiple of its input's length (a decoded observation is ~5x its smallest encoding).

use crate::ballot::{Ballot, ConfigDigest, MAX_OBSERVATIONS};
use crate::ids::{AgentId, CheckId, IdError, Reason};
use crate::observation::{Observation, Status, MAX_DETAIL_LEN};
use crate::time::UnixMillis;

pub(crate) const BALLOT_MAGIC: &[u8; 3] = b"QGB";
/// The encoding version this build writes and reads.
pub const BALLOT_VERSION: u8 = 1;
/// Largest possible encoded observation: longest check and reason, a lag, the longest detail.
pub const MAX_OBSERVATION_LEN: usize = 1
    + crate::ids::MAX_ID_LEN
    + 1
    + 1
    + crate::ids::MAX_REASON_LEN
    + 4
    + 8
    + 1
    + 8
    + 2
    + MAX_DETAIL_LEN;
/// Largest possible encoded ballot header (magic, version, longest agent id, fixed fields).
pub const MAX_HEADER_LEN: usize = 4 + 1 + crate::ids::MAX_ID_LEN + 8 + 8 + 4 + 32 + 4;

/// The most bytes a signed ballot with `observations` observations can take on the wire.
/// Configuration uses it to refuse check lists whose ballots could exceed the size limit.
#[must_use]
pub const fn max_wire_len(observations: usize) -> usize {
    crate::signed::ENVELOPE_LEN + MAX_HEADER_LEN + observations * MAX_OBSERVATION_LEN
}

/// Smallest possible encoded observation: 1-byte check and reason, no lag, empty detail.
const MIN_OBSERVATION_LEN: usize = 2 + 1 + 2 + 4 + 8 + 1 + 2;

/// Why bytes are not a canonical ballot. Each variant is a distinct failure for logs; all of
/// them count as the `decode` rejection reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input ends early: needed {needed} more bytes at offset {at}")]
    Truncated { at: usize, needed: usize },
    #[error("bad magic: not a quorumgate {0}")]
    BadMagic(&'static str),
    #[error("unsupported encoding version {0}")]
    UnsupportedVersion(u8),
    #[error("invalid {field}: {source}")]
    BadId {
        field: &'static str,
        source: IdError,
    },
    #[error("invalid {field}: not UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("invalid {field} byte {value}")]
    BadEnum { field: &'static str, value: u8 },
    #[error("{count} observations declared; at most {max} fit")]
    TooManyObservations { count: usize, max: usize },
    #[error("{count} {field} declared; at most {max} are allowed")]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("observations are not strictly ascending by check at {0}")]
    NotCanonical(String),
    #[error("detail longer than {MAX_DETAIL_LEN} bytes")]
    DetailTooLong,
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

/// Appends big-endian fields to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// A string of at most 255 bytes; every caller passes a validated token.
    pub(crate) fn str8(&mut self, s: &str) {
        let len = u8::try_from(s.len()).unwrap_or(u8::MAX);
        self.u8(len);
        self.bytes(&s.as_bytes()[..usize::from(len)]);
    }
    pub(crate) fn str16(&mut self, s: &str) {
        let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.bytes(&s.as_bytes()[..usize::from(len)]);
    }
}

/// Reads big-endian fields from untrusted bytes; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn utf8(&mut self, len: usize, field: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::NotUtf8 { field })
    }
    pub(crate) fn str8(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u8()?);
        self.utf8(len, field)
    }
    pub(crate) fn str16(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u16()?);
        self.utf8(len, field)
    }
    pub(crate) fn magic(&mut self, magic: &[u8; 3], what: &'static str) -> Result<(), DecodeError> {
        if self.take(3)? != magic {
            return Err(DecodeError::BadMagic(what));
        }
        match self.u8()? {
            BALLOT_VERSION => Ok(()),
            v => Err(DecodeError::UnsupportedVersion(v)),
        }
    }
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Parses a validated token read from untrusted bytes, naming the field on failure.
pub(crate) fn id<T: std::str::FromStr<Err = IdError>>(
    s: &str,
    field: &'static str,
) -> Result<T, DecodeError> {
    s.parse()
        .map_err(|source| DecodeError::BadId { field, source })
}

/// The canonical bytes of `ballot`.
#[must_use]
pub fn encode_ballot(ballot: &Ballot) -> Vec<u8> {
    let obs = ballot.observations();
    let mut w = Writer::with_capacity(64 + obs.len() * 48);
    w.bytes(BALLOT_MAGIC);
    w.u8(BALLOT_VERSION);
    w.str8(ballot.agent().as_str());
    w.u64(ballot.seq());
    w.u64(ballot.issued_at().0);
    w.u32(ballot.valid_for_ms());
    w.bytes(&ballot.config_digest().0);
    // Ballot::new bounds the count by MAX_OBSERVATIONS, far below u32::MAX.
    w.u32(u32::try_from(obs.len()).unwrap_or(u32::MAX));
    for o in obs {
        w.str8(o.check.as_str());
        w.u8(o.status.to_byte());
        w.str8(o.reason.as_str());
        w.u32(o.latency_ms);
        w.u64(o.observed_at.0);
        match o.lag_ms {
            Some(lag) => {
                w.u8(1);
                w.u64(lag);
            }
            None => w.u8(0),
        }
        w.str16(&o.detail);
    }
    w.buf
}

/// Decodes canonical ballot bytes. Never panics; allocation is bounded by a small multiple of
/// `bytes.len()`.
pub fn decode_ballot(bytes: &[u8]) -> Result<Ballot, DecodeError> {
    let mut r = Reader::new(bytes);
    r.magic(BALLOT_MAGIC, "ballot")?;
    let agent = id::<AgentId>(r.str8("agent")?, "agent")?;
    let seq = r.u64()?;
    let issued_at = UnixMillis(r.u64()?);
    let valid_for_ms = r.u32()?;
    let digest = ConfigDigest(r.array()?);
    let count = r.u32()? as usize;
    let fit = (r.remaining() / MIN_OBSERVATION_LEN).min(MAX_OBSERVATIONS);
    if count > fit {
        return Err(DecodeError::TooManyObservations { count, max: fit });
    }
    let mut observations: Vec<Observation> = Vec::with_capacity(count);
    for _ in 0..count {
        let check = id::<CheckId>(r.str8("check")?, "check")?;
        if let Some(prev) = observations.last() {
            if prev.check >= check {
                return Err(DecodeError::NotCanonical(check.to_string()));
            }
        }
        let status_byte = r.u8()?;
        let status = Status::from_byte(status_byte).ok_or(DecodeError::BadEnum {
            field: "status",
            value: status_byte,
        })?;
        let reason = id::<Reason>(r.str8("reason")?, "reason")?;
        let latency_ms = r.u32()?;
        let observed_at = UnixMillis(r.u64()?);
        let lag_ms = match r.u8()? {
            0 => None,
            1 => Some(r.u64()?),
            value => {
                return Err(DecodeError::BadEnum {
                    field: "lag flag",
                    value,
                })
            }
        };
        let detail = r.str16("detail")?;
        if detail.len() > MAX_DETAIL_LEN {
            return Err(DecodeError::DetailTooLong);
        }
        observations.push(Observation {
            check,
            status,
            reason,
            latency_ms,
            observed_at,
            lag_ms,
            detail: detail.to_owned(),
        });
    }
    r.finish()?;
    Ok(Ballot::from_canonical_parts(
        agent,
        seq,
        issued_at,
        valid_for_ms,
        digest,
        observations,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(n: usize) -> Ballot {
        let obs = (0..n)
            .map(|i| {
                let o = Observation::new(
                    CheckId::new(format!("check-{i:05}")).unwrap(),
                    if i % 3 == 0 {
                        Status::Unhealthy
                    } else {
                        Status::Healthy
                    },
                    Reason::from_static("ok"),
                    i as u32,
                    UnixMillis(1_700_000_000_000 + i as u64),
                );
                if i % 2 == 0 {
                    o.with_lag_ms(i as u64).with_detail("status=503")
                } else {
                    o
                }
            })
            .collect();
        Ballot::new(
            AgentId::new("use1").unwrap(),
            42,
            UnixMillis(1_700_000_000_000),
            15_000,
            ConfigDigest([7; 32]),
            obs,
        )
        .unwrap()
    }

    #[test]
    fn round_trips() {
        for n in [0, 1, 10, 300] {
            let b = sample(n);
            assert_eq!(decode_ballot(&encode_ballot(&b)).unwrap(), b);
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode_ballot(&sample(5));
        for cut in 0..bytes.len() {
            assert!(
                decode_ballot(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
    }

    #[test]
    fn rejects_non_canonical_forms() {
        let mut bytes = encode_ballot(&sample(2));
        bytes.push(0);
        assert_eq!(decode_ballot(&bytes), Err(DecodeError::TrailingBytes(1)));

        let mut v2 = encode_ballot(&sample(1));
        v2[3] = 2;
        assert_eq!(decode_ballot(&v2), Err(DecodeError::UnsupportedVersion(2)));

        // Swap the order of two observations by re-encoding them by hand.
        let b = sample(2);
        let mut w = Writer::default();
        w.bytes(BALLOT_MAGIC);
        w.u8(1);
        w.str8("use1");
        w.u64(1);
        w.u64(1);
        w.u32(1);
        w.bytes(&[0; 32]);
        w.u32(2);
        for o in b.observations().iter().rev() {
            w.str8(o.check.as_str());
            w.u8(0);
            w.str8("ok");
            w.u32(0);
            w.u64(0);
            w.u8(0);
            w.str16("");
        }
        assert!(matches!(
            decode_ballot(&w.buf),
            Err(DecodeError::NotCanonical(_))
        ));
    }

    #[test]
    fn max_wire_len_bounds_the_worst_case() {
        let long = |c: char, n| std::iter::repeat_n(c, n).collect::<String>();
        let obs: Vec<Observation> = (0..3)
            .map(|i| {
                Observation::new(
                    CheckId::new(format!("{i}{}", long('c', 63))).unwrap(),
                    Status::Unhealthy,
                    Reason::new(long('r', 32)).unwrap(),
                    u32::MAX,
                    UnixMillis(u64::MAX),
                )
                .with_lag_ms(u64::MAX)
                .with_detail(long('d', MAX_DETAIL_LEN))
            })
            .collect();
        let b = Ballot::new(
            AgentId::new(long('a', 64)).unwrap(),
            1,
            UnixMillis(1),
            1,
            ConfigDigest([0; 32]),
            obs,
        )
        .unwrap();
        let key = crate::signed::SigningKey::from_bytes(&[1; 32]);
        let wire = crate::signed::SignedBallot::sign(&b, &key).to_wire();
        assert_eq!(wire.len(), max_wire_len(3));
    }

    #[test]
    fn huge_declared_count_does_not_allocate() {
        let mut w = Writer::default();
        w.bytes(BALLOT_MAGIC);
        w.u8(1);
        w.str8("a");
        w.u64(1);
        w.u64(1);
        w.u32(1);
        w.bytes(&[0; 32]);
        w.u32(u32::MAX);
        assert!(matches!(
            decode_ballot(&w.buf),
            Err(DecodeError::TooManyObservations { .. })
        ));
    }
}
