//! The chunked transfer coding (RFC 9112 7.1), decoded incrementally: chunk
//! sizes in hex without overflow, chunk extensions accepted and bounded,
//! CRLF exactly where it belongs, trailer fields parsed like header fields
//! and handed to the application.

use super::error::{ErrorReason as R, HttpError};
use super::is_tchar;

/// The most hex digits of a chunk size (2^60 bytes is plenty).
const MAX_SIZE_DIGITS: usize = 15;
/// The longest chunk extension accepted (HTTP.SYS bounds these too).
const MAX_EXTENSION: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size {
        digits: usize,
    },
    /// Whitespace after the size: only a `;` extension may follow.
    ExtensionBws {
        len: usize,
    },
    Extension {
        len: usize,
    },
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    Trailer {
        line_len: usize,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// What one call to [`ChunkedDecoder::decode`] yielded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `input[start..end]` is body data; `consumed` bytes of input are used.
    Data {
        start: usize,
        end: usize,
        consumed: usize,
    },
    /// All input up to `consumed` is used; more is needed.
    NeedMore { consumed: usize },
    /// The body is complete after `consumed` bytes; trailer fields, raw
    /// (`name: value\r\n` lines), follow.
    End { consumed: usize, trailers: Vec<u8> },
}

#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    remaining: u64,
    trailers: Vec<u8>,
    max_trailer_bytes: usize,
    max_field_length: usize,
}

fn bad(detail: &'static str) -> HttpError {
    HttpError::bad_request(R::BadRequest, detail)
}

impl ChunkedDecoder {
    pub fn new(max_trailer_bytes: usize, max_field_length: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            trailers: Vec::new(),
            max_trailer_bytes,
            max_field_length,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, stopping at the first stretch of body data.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, HttpError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => {
                    let value = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        b';' if digits > 0 => {
                            self.state = State::Extension { len: 0 };
                            i += 1;
                            continue;
                        }
                        b' ' | b'\t' if digits > 0 => {
                            self.state = State::ExtensionBws { len: 1 };
                            i += 1;
                            continue;
                        }
                        b'\r' if digits > 0 => {
                            self.state = State::SizeLf;
                            i += 1;
                            continue;
                        }
                        b'\n' => {
                            return Err(HttpError::bad_request(
                                R::InvalidCrLf,
                                "Invalid Line Ending",
                            ))
                        }
                        _ => return Err(bad("Invalid Chunk Size")),
                    };
                    if digits == MAX_SIZE_DIGITS {
                        return Err(bad("Invalid Chunk Size"));
                    }
                    self.remaining = (self.remaining << 4) | u64::from(value);
                    self.state = State::Size { digits: digits + 1 };
                    i += 1;
                }
                State::ExtensionBws { len } => {
                    match b {
                        b';' => self.state = State::Extension { len },
                        b' ' | b'\t' if len < MAX_EXTENSION => {
                            self.state = State::ExtensionBws { len: len + 1 }
                        }
                        _ => return Err(bad("Invalid Chunk Extension")),
                    }
                    i += 1;
                }
                State::Extension { len } => {
                    // chunk-ext: BWS ";" BWS name [ BWS "=" BWS value ],
                    // values possibly quoted: accepted and ignored, but only
                    // visible characters and bounded.
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if len >= MAX_EXTENSION || (b < b' ' && b != b'\t') || b == 0x7f {
                        return Err(bad("Invalid Chunk Extension"));
                    } else {
                        self.state = State::Extension { len: len + 1 };
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(HttpError::bad_request(
                            R::InvalidCrLf,
                            "Invalid Line Ending",
                        ));
                    }
                    i += 1;
                    self.state = if self.remaining == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let available = (input.len() - i) as u64;
                    let take = available.min(self.remaining) as usize;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Step::Data {
                        start: i,
                        end: i + take,
                        consumed: i + take,
                    });
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(bad("Invalid Chunk Data"));
                    }
                    self.state = State::DataLf;
                    i += 1;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(HttpError::bad_request(
                            R::InvalidCrLf,
                            "Invalid Line Ending",
                        ));
                    }
                    self.state = State::Size { digits: 0 };
                    i += 1;
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::TrailerLf { empty: true };
                    } else if b == b' ' || b == b'\t' || !is_tchar(b) {
                        // obs-fold or a name that is not a token.
                        return Err(HttpError::bad_request(R::Header, "Invalid Trailer"));
                    } else {
                        self.push_trailer(b)?;
                        self.state = State::Trailer { line_len: 1 };
                    }
                    i += 1;
                }
                State::Trailer { line_len } => {
                    if b == b'\r' {
                        self.state = State::TrailerLf { empty: false };
                    } else if b == b'\n' {
                        return Err(HttpError::bad_request(
                            R::InvalidCrLf,
                            "Invalid Line Ending",
                        ));
                    } else if line_len >= self.max_field_length {
                        return Err(HttpError::new(
                            431,
                            R::FieldLength,
                            "Trailer Field Too Long",
                        ));
                    } else if (b < b' ' && b != b'\t') || b == 0x7f {
                        return Err(HttpError::bad_request(R::Header, "Invalid Trailer"));
                    } else {
                        self.push_trailer(b)?;
                        self.state = State::Trailer {
                            line_len: line_len + 1,
                        };
                    }
                    i += 1;
                }
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(HttpError::bad_request(
                            R::InvalidCrLf,
                            "Invalid Line Ending",
                        ));
                    }
                    i += 1;
                    if empty {
                        self.state = State::Done;
                        self.validate_trailers()?;
                        return Ok(Step::End {
                            consumed: i,
                            trailers: std::mem::take(&mut self.trailers),
                        });
                    }
                    self.push_trailer(b'\r')?;
                    self.push_trailer(b'\n')?;
                    self.state = State::TrailerStart;
                }
                State::Done => {
                    return Ok(Step::End {
                        consumed: i,
                        trailers: Vec::new(),
                    })
                }
            }
        }
        Ok(Step::NeedMore { consumed: i })
    }

    fn push_trailer(&mut self, b: u8) -> Result<(), HttpError> {
        if self.trailers.len() >= self.max_trailer_bytes {
            return Err(HttpError::new(431, R::RequestLength, "Trailers Too Long"));
        }
        self.trailers.push(b);
        Ok(())
    }

    /// Each trailer line is `name: value`; framing fields may not appear.
    fn validate_trailers(&self) -> Result<(), HttpError> {
        for line in self.trailers.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(HttpError::bad_request(R::Header, "Invalid Trailer"));
            };
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(HttpError::bad_request(R::Header, "Invalid Trailer"));
            }
            // RFC 9110 6.5.1: fields that frame or route the message are not
            // allowed in trailers.
            for forbidden in [&b"content-length"[..], b"transfer-encoding", b"host"] {
                if name.eq_ignore_ascii_case(forbidden) {
                    return Err(HttpError::bad_request(R::Header, "Invalid Trailer"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes: (body, trailers).
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>, usize), HttpError> {
        let mut d = ChunkedDecoder::new(4096, 1024);
        let mut body = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut total = 0;
        loop {
            if buf.is_empty() || fed < input.len() {
                let end = (fed + piece).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            loop {
                match d.decode(&buf)? {
                    Step::Data {
                        start,
                        end,
                        consumed,
                    } => {
                        body.extend_from_slice(&buf[start..end]);
                        buf.drain(..consumed);
                        total += consumed;
                    }
                    Step::NeedMore { consumed } => {
                        buf.drain(..consumed);
                        total += consumed;
                        break;
                    }
                    Step::End { consumed, trailers } => {
                        total += consumed;
                        return Ok((body, trailers, total));
                    }
                }
            }
            if fed == input.len() && buf.is_empty() {
                return Err(bad("incomplete"));
            }
        }
    }

    #[test]
    fn whole_and_piecewise() {
        let input =
            b"5\r\nhello\r\n7 ; ext=\"q;v\"\r\n, world\r\n0\r\nX-Sum: 1\r\nX-Two: b\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 100] {
            let (body, trailers, used) = decode(input, piece).unwrap();
            assert_eq!(body, b"hello, world");
            assert_eq!(trailers, b"X-Sum: 1\r\nX-Two: b\r\n");
            assert_eq!(&input[used..], b"NEXT", "piece {piece}");
        }
        let (body, trailers, _) = decode(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!((body.len(), trailers.len()), (10, 0));
        let (body, _, _) = decode(b"0\r\n\r\n", 1).unwrap();
        assert!(body.is_empty());
    }

    #[test]
    fn refusals() {
        let cases: &[&[u8]] = &[
            b"\r\n",
            b"x\r\n",
            b"-1\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"1000000000000000\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\rX0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX: a\n\r\n",
            b"5\r\nhello\r\n0\r\n folded: a\r\n\r\n",
            b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
            b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n",
            b"5;bad\x01ext\r\nhello\r\n0\r\n\r\n",
            b"5 \x00\r\nhello\r\n0\r\n\r\n",
            b"5 garbage\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
        ];
        for case in cases {
            assert!(
                decode(case, 3).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
        let long_ext = [b"5;".as_slice(), &[b'e'; 2000], b"\r\nhello\r\n0\r\n\r\n"].concat();
        assert!(decode(&long_ext, 50).is_err());
        let long_trailers = [
            b"0\r\n".as_slice(),
            &b"X: 01234567890123456789\r\n".repeat(300),
            b"\r\n",
        ]
        .concat();
        assert_eq!(decode(&long_trailers, 64).unwrap_err().status, 431);
    }

    #[test]
    fn maximum_chunk_size_does_not_overflow() {
        let mut d = ChunkedDecoder::new(100, 100);
        let step = d.decode(b"fffffffffffffff\r\nab").unwrap();
        assert_eq!(
            step,
            Step::Data {
                start: 17,
                end: 19,
                consumed: 19
            }
        );
        assert_eq!(d.remaining, 0xfff_ffff_ffff_ffff - 2);
    }
}
