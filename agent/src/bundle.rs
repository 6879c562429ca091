//! The `GET /v1/ballots` body: every held ballot, each in its signed wire form.
//!
//! ```text
//! bundle = "QGL" version:u8(=1) count:u16 (len:u32 signed_wire)*
//! ```
//! Decoding is bounded by the input: a hostile peer cannot make us allocate more than it sent.

const MAGIC: &[u8; 3] = b"QGL";
const VERSION: u8 = 1;

/// Why a bundle does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a ballot bundle (bad magic or version)")]
    Header,
    #[error("bundle ends early")]
    Truncated,
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Encodes up to 65,535 wire ballots (membership is capped at 255).
#[must_use]
pub fn encode(ballots: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + ballots.iter().map(|b| b.len() + 4).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    let count = ballots.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for b in &ballots[..count] {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// Splits a bundle into its wire ballots (each still to be validated by the book).
pub fn decode(bytes: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    if bytes.len() < 6 || &bytes[..3] != MAGIC || bytes[3] != VERSION {
        return Err(BundleError::Header);
    }
    let count = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
    let mut rest = &bytes[6..];
    let mut out = Vec::with_capacity(count.min(rest.len() / 4));
    for _ in 0..count {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(BundleError::Truncated)?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(BundleError::Truncated);
        }
        let (item, tail) = tail.split_at(len);
        out.push(item);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(BundleError::Trailing(rest.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_input() {
        let items = vec![b"one".to_vec(), Vec::new(), b"three".to_vec()];
        let enc = encode(&items);
        let dec = decode(&enc).unwrap();
        assert_eq!(dec, items.iter().map(Vec::as_slice).collect::<Vec<_>>());
        for cut in 0..enc.len() {
            assert!(decode(&enc[..cut]).is_err());
        }
        let mut extra = enc.clone();
        extra.push(1);
        assert_eq!(decode(&extra), Err(BundleError::Trailing(1)));
        // A huge declared count with no data allocates nothing large and fails cleanly.
        assert_eq!(decode(b"QGL\x01\xff\xff"), Err(BundleError::Truncated));
    }
}
