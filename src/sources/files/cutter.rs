//! Cutting an input into chunks of whole lines without reading it line by line: blocks are read
//! as they come and cut after their last newline, so the one thread that reads does little more
//! than copy (the workers find the lines). A line longer than the record limit is kept by its
//! first bytes and its length; the rest is skipped without being held.

use std::io::Read;

use crate::parse::MAX_RECORD_BYTES;

/// Bytes read at a time when a read need not fill a chunk.
const BLOCK: usize = 1 << 16;

/// A run of whole lines of the input, the `index`-th from its start.
pub struct Chunk {
    /// The chunk's place in the input, from 0.
    pub index: usize,
    /// The lines, each ended by `\n` (the input's last line perhaps not); an oversized line by
    /// its first `MAX_RECORD_BYTES + 1` bytes only.
    pub data: Vec<u8>,
    /// Where each line cut short starts in `data`, with its full length.
    pub oversized: Vec<(usize, u64)>,
}

/// Reads an input and cuts it into [`Chunk`]s.
pub struct Cutter<R> {
    input: R,
    /// The start of a line the last chunk ended before.
    carry: Vec<u8>,
    chunk_bytes: usize,
    /// Whether a chunk ends as soon as the input has nothing more to give right now (stdin: a
    /// quiet pipe's lines are not held back until a chunk fills).
    live: Option<std::os::fd::RawFd>,
    next: usize,
}

impl<R: Read> Cutter<R> {
    /// A cutter of `input` into chunks of about `chunk_bytes`; `live`: the descriptor to ask
    /// whether more is ready before waiting for it.
    pub fn new(input: R, chunk_bytes: usize, live: Option<std::os::fd::RawFd>) -> Self {
        Cutter { input, carry: Vec::new(), chunk_bytes: chunk_bytes.max(1), live, next: 0 }
    }

    /// The next chunk (`None`: the input is at its end).
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        let capacity = if self.live.is_some() { BLOCK } else { self.chunk_bytes.saturating_add(BLOCK) };
        let mut data = Vec::with_capacity(capacity.max(self.carry.len() + BLOCK));
        data.append(&mut self.carry);
        let mut oversized = Vec::new();
        // Where the line not yet ended by a newline starts (the carry holds none).
        let mut line_start = 0;
        loop {
            if line_start > 0 && (data.len() >= self.chunk_bytes || self.live.is_some_and(|fd| !ready(fd))) {
                break;
            }
            let old = data.len();
            let n = self.read_more(&mut data)?;
            if n == 0 {
                if data.is_empty() {
                    return Ok(None);
                }
                // The last line ends with the input.
                line_start = data.len();
                break;
            }
            if let Some(p) = memchr::memrchr(b'\n', &data[old..]) {
                line_start = old + p + 1;
            }
            if data.len() - line_start > MAX_RECORD_BYTES + 1 {
                let so_far = (data.len() - line_start) as u64;
                data.truncate(line_start + MAX_RECORD_BYTES + 1);
                let (len, rest) = self.skip_line(so_far)?;
                oversized.push((line_start, len));
                data.push(b'\n');
                line_start = data.len();
                data.extend_from_slice(&rest);
                if let Some(p) = memchr::memrchr(b'\n', &rest) {
                    line_start += p + 1;
                }
            }
        }
        self.carry = data.split_off(line_start);
        let index = self.next;
        self.next += 1;
        Ok(Some(Chunk { index, data, oversized }))
    }

    /// Reads what comes next onto the end of `data`: up to what fills the chunk, or a block.
    fn read_more(&mut self, data: &mut Vec<u8>) -> std::io::Result<usize> {
        let want = if self.live.is_some() { BLOCK } else { self.chunk_bytes.saturating_sub(data.len()).max(BLOCK) };
        let old = data.len();
        data.resize(old + want, 0);
        let n = read_retrying(&mut self.input, &mut data[old..]);
        data.truncate(old + *n.as_ref().unwrap_or(&0));
        n
    }

    /// Reads past the rest of a line of which `so_far` bytes were read: its full length, and
    /// the bytes read after its newline.
    fn skip_line(&mut self, so_far: u64) -> std::io::Result<(u64, Vec<u8>)> {
        let mut len = so_far;
        let mut block = vec![0u8; BLOCK];
        loop {
            let n = read_retrying(&mut self.input, &mut block)?;
            if n == 0 {
                return Ok((len, Vec::new()));
            }
            match memchr::memchr(b'\n', &block[..n]) {
                Some(p) => return Ok((len + p as u64, block[p + 1..n].to_vec())),
                None => len += n as u64,
            }
        }
    }
}

fn read_retrying(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Whether `fd` has something to read (or is at its end) right now.
fn ready(fd: std::os::fd::RawFd) -> bool {
    let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, a zero timeout: poll only fills in `revents`.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    n != 0
}

/// The lines of a chunk's data: each line's start and end (without its `\n`).
pub fn lines(data: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= data.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |p| start + p);
        let line = (start, end);
        start = end + 1;
        Some(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], chunk_bytes: usize) -> Vec<Chunk> {
        let mut cutter = Cutter::new(input, chunk_bytes, None);
        std::iter::from_fn(|| cutter.next_chunk().unwrap()).collect()
    }

    fn texts(chunk: &Chunk) -> Vec<&[u8]> {
        lines(&chunk.data).map(|(s, e)| &chunk.data[s..e]).collect()
    }

    #[test]
    fn chunks_hold_whole_lines_in_order() {
        let input = b"a 1\nbb 2\n\nccc 3\nlast";
        for size in [1, 3, 6, 100] {
            let chunks = all(input, size);
            let joined: Vec<&[u8]> = chunks.iter().flat_map(texts).collect();
            assert_eq!(joined, vec![&b"a 1"[..], b"bb 2", b"", b"ccc 3", b"last"], "chunks of {size}");
            assert!(chunks.iter().enumerate().all(|(i, c)| c.index == i));
        }
        assert_eq!(all(b"one\n", 100).len(), 1);
        assert!(all(b"", 100).is_empty());
    }

    #[test]
    fn a_live_input_is_cut_when_it_has_nothing_more_to_give() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (reader, mut writer) = std::io::pipe().unwrap();
        let fd = reader.as_raw_fd();
        let mut cutter = Cutter::new(reader, 4 << 20, Some(fd));
        writer.write_all(b"1 first\n2 sec").unwrap();
        // The pipe stays open: the chunk holds the whole line at once, not 4 MiB later.
        let chunk = cutter.next_chunk().unwrap().unwrap();
        assert_eq!(texts(&chunk), vec![&b"1 first"[..]]);
        writer.write_all(b"ond\n").unwrap();
        drop(writer);
        assert_eq!(texts(&cutter.next_chunk().unwrap().unwrap()), vec![&b"2 second"[..]]);
        assert!(cutter.next_chunk().unwrap().is_none());
    }

    #[test]
    fn an_oversized_line_is_kept_by_its_head_and_its_length() {
        let mut input = b"a 1\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * MAX_RECORD_BYTES));
        input.extend_from_slice(b"\nb 2\n");
        input.extend(std::iter::repeat_n(b'y', MAX_RECORD_BYTES + 5));
        for size in [16, 1 << 20] {
            let chunks = all(&input, size);
            let joined: Vec<&[u8]> = chunks.iter().flat_map(texts).collect();
            assert_eq!(joined.len(), 4, "chunks of {size}");
            assert_eq!((joined[0], joined[2]), (&b"a 1"[..], &b"b 2"[..]));
            assert_eq!((joined[1].len(), joined[3].len()), (MAX_RECORD_BYTES + 1, MAX_RECORD_BYTES + 1), "no more than the limit is held");
            let lengths: Vec<u64> = chunks.iter().flat_map(|c| c.oversized.iter().map(|o| o.1)).collect();
            assert_eq!(lengths, vec![3 * MAX_RECORD_BYTES as u64, MAX_RECORD_BYTES as u64 + 5]);
        }
    }
}
