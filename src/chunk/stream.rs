//! Streaming chunker: cuts a reader of any size into chunks while holding at most about two
//! maximum-size chunks in memory.

use std::io::{self, Read};

use super::Cutter;

/// Reads from `R` and yields chunks in order; concatenated, they are the input.
pub struct StreamChunker<'g, R> {
    reader: R,
    cutter: Cutter<'g>,
    buf: Vec<u8>,
    start: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

impl<'g, R: Read> StreamChunker<'g, R> {
    pub fn new(reader: R, cutter: Cutter<'g>) -> Self {
        let capacity = 2 * cutter.max_size();
        StreamChunker {
            reader,
            cutter,
            buf: Vec::with_capacity(capacity),
            start: 0,
            offset: 0,
            eof: false,
        }
    }

    /// Tops the buffer up to at least one maximum chunk past `start`, or to end of input.
    fn fill(&mut self) -> io::Result<()> {
        let want = self.cutter.max_size();
        if self.buf.len() - self.start >= want || self.eof {
            return Ok(());
        }
        self.buf.drain(..self.start);
        self.start = 0;
        let target = 2 * want;
        while self.buf.len() < target {
            let old = self.buf.len();
            self.buf.resize(target, 0);
            match self.reader.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    self.eof = true;
                    break;
                }
                Ok(n) => self.buf.truncate(old + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(old),
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for StreamChunker<'_, R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        let available = &self.buf[self.start..];
        if available.is_empty() {
            return None;
        }
        let len = self.cutter.next_cut(available, self.offset);
        let chunk = available[..len].to_vec();
        self.start += len;
        self.offset += len as u64;
        Some(Ok(chunk))
    }
}
