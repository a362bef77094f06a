//! A digest of what the daemon reads from a context: the tar the build would be sent, with the fields
//! that change on every checkout (modification, access and change times) and the header checksum
//! left out. Two contexts with the same digest give a build the same files, names, modes, links and
//! contents; a fresh `git clone` of the same commit has the same digest.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

const BLOCK: usize = 512;
/// `mtime` then `chksum`: the checksum covers the mtime, so both go.
const TIMES_AND_CHECKSUM: std::ops::Range<usize> = 136..156;
/// GNU headers keep `atime` and `ctime` where ustar keeps the name prefix.
const GNU_TIMES: std::ops::Range<usize> = 345..369;
const GNU_MAGIC: &[u8] = b"ustar  \0";

/// A `Write` sink that hashes a tar stream block by block. Written by hand because the stream is
/// produced here and only three header fields need blanking; parsing it back with `tar::Archive`
/// would need a second thread and a pipe.
pub(crate) struct TarDigest {
    hasher: Sha256,
    block: [u8; BLOCK],
    filled: usize,
    data_blocks_left: u64,
}

impl TarDigest {
    pub(crate) fn new() -> Self {
        TarDigest {
            hasher: Sha256::new(),
            block: [0; BLOCK],
            filled: 0,
            data_blocks_left: 0,
        }
    }

    /// The digest, as 32 bytes. A trailing partial block (never written by a whole archive) is hashed
    /// as it is.
    pub(crate) fn finish(mut self) -> [u8; 32] {
        let tail = self.filled;
        self.hasher.update(&self.block[..tail]);
        self.hasher.finalize().into()
    }

    fn take_block(&mut self) {
        if self.data_blocks_left > 0 {
            self.data_blocks_left -= 1;
        } else if self.block.iter().any(|&b| b != 0) {
            self.data_blocks_left = entry_size(&self.block).div_ceil(BLOCK as u64);
            self.block[TIMES_AND_CHECKSUM].fill(b' ');
            if &self.block[257..265] == GNU_MAGIC {
                self.block[GNU_TIMES].fill(0);
            }
        }
        self.hasher.update(self.block);
        self.filled = 0;
    }
}

/// A writer that also digests what passes through it, as [`TarDigest`] does: the digest of exactly
/// the tar that was sent.
pub(crate) struct Tee<W> {
    inner: W,
    digest: Option<TarDigest>,
}

impl<W: Write> Tee<W> {
    pub(crate) fn new(inner: W, digest: bool) -> Self {
        Tee {
            inner,
            digest: digest.then(TarDigest::new),
        }
    }

    pub(crate) fn into_parts(self) -> (W, Option<[u8; 32]>) {
        (self.inner, self.digest.map(TarDigest::finish))
    }
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(data)?;
        if let Some(digest) = &mut self.digest {
            digest.write_all(&data[..written])?;
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The size field of a header: octal digits, or base-256 when the top bit is set (GNU, for
/// sizes of 8 GiB and more).
fn entry_size(header: &[u8; BLOCK]) -> u64 {
    let field = &header[124..136];
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x7f), |n, &b| (n << 8) | u64::from(b));
    }
    field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .fold(0, |n, &b| (n << 3) | u64::from(b - b'0'))
}

impl Write for TarDigest {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let written = data.len();
        while !data.is_empty() {
            let take = (BLOCK - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == BLOCK {
                self.take_block();
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8], u64, u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data, mtime, mode) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mtime(*mtime);
            header.set_mode(*mode);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn digest(bytes: &[u8]) -> [u8; 32] {
        let mut sink = TarDigest::new();
        // Odd write sizes: blocks must be reassembled across calls.
        for chunk in bytes.chunks(77) {
            sink.write_all(chunk).unwrap();
        }
        sink.finish()
    }

    #[test]
    fn modification_times_do_not_count() {
        let old = archive(&[("a.txt", b"hello", 1, 0o644), ("b", &[7; 1000], 2, 0o644)]);
        let new = archive(&[
            ("a.txt", b"hello", 9999, 0o644),
            ("b", &[7; 1000], 5, 0o644),
        ]);
        assert_ne!(old, new);
        assert_eq!(digest(&old), digest(&new));
    }

    #[test]
    fn contents_names_and_modes_count() {
        let base = digest(&archive(&[("a.txt", b"hello", 1, 0o644)]));
        assert_ne!(base, digest(&archive(&[("a.txt", b"hellp", 1, 0o644)])));
        assert_ne!(base, digest(&archive(&[("b.txt", b"hello", 1, 0o644)])));
        assert_ne!(base, digest(&archive(&[("a.txt", b"hello", 1, 0o755)])));
    }

    #[test]
    fn data_that_looks_like_a_header_is_hashed_as_data() {
        // A file whose content is itself a tar header with another mtime: it must not be blanked.
        let inner_a = archive(&[("x", b"", 1, 0o644)]);
        let inner_b = archive(&[("x", b"", 2, 0o644)]);
        let a = archive(&[("f.tar", &inner_a, 1, 0o644)]);
        let b = archive(&[("f.tar", &inner_b, 1, 0o644)]);
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn sizes_read_in_octal_and_base_256() {
        let mut header = [0u8; BLOCK];
        header[124..136].copy_from_slice(b"00000001750\0");
        assert_eq!(entry_size(&header), 1000);
        header[124..136].fill(0);
        header[124] = 0x80;
        header[131..136].copy_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(entry_size(&header), 8 << 30);
    }
}
