//! The FastCGI protocol (version 1) from the web server's side: the
//! records a server sends (BEGIN_REQUEST, PARAMS with their name-value
//! pairs, STDIN, ABORT_REQUEST, GET_VALUES) encoded into a buffer, and
//! the records an application sends (STDOUT, STDERR, END_REQUEST,
//! GET_VALUES_RESULT, UNKNOWN_TYPE) decoded from a byte stream as it
//! arrives, with every length, version and type checked. No I/O: the
//! worker's FastCGI handler owns the sockets.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version every record carries.
pub const VERSION: u8 = 1;
/// The most content one record holds.
pub const MAX_CONTENT: usize = 65_535;

/// Record types.
pub mod kind {
    pub const BEGIN_REQUEST: u8 = 1;
    pub const ABORT_REQUEST: u8 = 2;
    pub const END_REQUEST: u8 = 3;
    pub const PARAMS: u8 = 4;
    pub const STDIN: u8 = 5;
    pub const STDOUT: u8 = 6;
    pub const STDERR: u8 = 7;
    pub const DATA: u8 = 8;
    pub const GET_VALUES: u8 = 9;
    pub const GET_VALUES_RESULT: u8 = 10;
    pub const UNKNOWN_TYPE: u8 = 11;
}

/// BEGIN_REQUEST roles and flags.
pub const ROLE_RESPONDER: u16 = 1;
pub const FLAG_KEEP_CONN: u8 = 1;

/// END_REQUEST protocol statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolStatus {
    RequestComplete,
    /// The application takes one request per connection at a time.
    CantMpxConn,
    /// It is out of resources.
    Overloaded,
    UnknownRole,
    Other(u8),
}

impl From<u8> for ProtocolStatus {
    fn from(v: u8) -> ProtocolStatus {
        match v {
            0 => ProtocolStatus::RequestComplete,
            1 => ProtocolStatus::CantMpxConn,
            2 => ProtocolStatus::Overloaded,
            3 => ProtocolStatus::UnknownRole,
            other => ProtocolStatus::Other(other),
        }
    }
}

/// A record from the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Stdout {
        id: u16,
        data: Bytes,
    },
    Stderr {
        id: u16,
        data: Bytes,
    },
    EndRequest {
        id: u16,
        app_status: u32,
        protocol_status: ProtocolStatus,
    },
    GetValuesResult(Vec<(String, String)>),
    /// The application did not know a management record's type.
    UnknownType(u8),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("a record of FastCGI version {0}, not 1")]
    Version(u8),
    #[error("a record of type {0}, which an application does not send")]
    UnexpectedType(u8),
    #[error("an END_REQUEST record of {0} bytes, not 8")]
    EndRequestLength(usize),
    #[error("a name-value pair runs past its record")]
    Pairs,
}

/// Appends a record's header.
fn header(out: &mut BytesMut, kind: u8, id: u16, len: usize, padding: u8) {
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u16(id);
    out.put_u16(len as u16);
    out.put_u8(padding);
    out.put_u8(0);
}

/// Appends `data` as records of `kind` (split at 65535 bytes, padded to
/// 8); empty data makes the empty record that ends a stream.
pub fn encode_stream(out: &mut BytesMut, kind: u8, id: u16, data: &[u8]) {
    if data.is_empty() {
        header(out, kind, id, 0, 0);
        return;
    }
    for piece in data.chunks(MAX_CONTENT) {
        let padding = ((8 - piece.len() % 8) % 8) as u8;
        header(out, kind, id, piece.len(), padding);
        out.put_slice(piece);
        out.put_bytes(0, padding as usize);
    }
}

/// BEGIN_REQUEST for a Responder.
pub fn encode_begin(out: &mut BytesMut, id: u16, keep_conn: bool) {
    header(out, kind::BEGIN_REQUEST, id, 8, 0);
    out.put_u16(ROLE_RESPONDER);
    out.put_u8(if keep_conn { FLAG_KEEP_CONN } else { 0 });
    out.put_bytes(0, 5);
}

pub fn encode_abort(out: &mut BytesMut, id: u16) {
    header(out, kind::ABORT_REQUEST, id, 0, 0);
}

/// One name-value pair in FastCGI's length-prefixed form.
fn put_pair(out: &mut impl BufMut, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.put_u8(len as u8);
        } else {
            out.put_u32((len as u32) | 0x8000_0000);
        }
    }
    out.put_slice(name);
    out.put_slice(value);
}

/// The bytes of a record's header.
const HEADER_LEN: usize = 8;

/// A Responder request's records in one buffer, built as its variables
/// are worked out: BEGIN_REQUEST, then the PARAMS stream with each pair
/// written straight into its record (not gathered first and copied),
/// its end, and the end of STDIN for a request without a body. The
/// finished bytes are sent as often as the request is (a retry sends
/// them again).
pub struct RequestRecords {
    out: BytesMut,
    id: u16,
    /// Where the PARAMS record's header is, its length filled in at the
    /// end.
    params_at: usize,
}

impl RequestRecords {
    /// `capacity`: the bytes the variables are expected to take.
    pub fn new(id: u16, keep_conn: bool, capacity: usize) -> RequestRecords {
        let mut out = BytesMut::with_capacity(capacity + 5 * HEADER_LEN + 16);
        encode_begin(&mut out, id, keep_conn);
        let params_at = out.len();
        header(&mut out, kind::PARAMS, id, 0, 0);
        RequestRecords { out, id, params_at }
    }

    pub fn add(&mut self, name: &str, value: &str) {
        put_pair(&mut self.out, name.as_bytes(), value.as_bytes());
    }

    /// The records, with the end of STDIN when no body follows.
    pub fn finish(mut self, body_follows: bool) -> Bytes {
        let pairs_at = self.params_at + HEADER_LEN;
        let content = self.out.len() - pairs_at;
        if content == 0 {
            self.out.truncate(self.params_at);
        } else if content <= MAX_CONTENT {
            let padding = (8 - content % 8) % 8;
            self.out[self.params_at + 4..self.params_at + 6]
                .copy_from_slice(&(content as u16).to_be_bytes());
            self.out[self.params_at + 6] = padding as u8;
            self.out.put_bytes(0, padding);
        } else {
            // Past one record (rare: very large cookies): split into
            // records of their own.
            let pairs = self.out.split_off(pairs_at);
            self.out.truncate(self.params_at);
            encode_stream(&mut self.out, kind::PARAMS, self.id, &pairs);
        }
        header(&mut self.out, kind::PARAMS, self.id, 0, 0);
        if !body_follows {
            header(&mut self.out, kind::STDIN, self.id, 0, 0);
        }
        self.out.freeze()
    }
}

/// GET_VALUES for these variables (FCGI_MAX_CONNS, FCGI_MAX_REQS,
/// FCGI_MPXS_CONNS).
pub fn encode_get_values(out: &mut BytesMut, names: &[&str]) {
    let mut body = Vec::new();
    for name in names {
        put_pair(&mut body, name.as_bytes(), b"");
    }
    encode_stream(out, kind::GET_VALUES, 0, &body);
}

/// Decodes name-value pairs.
/// A name and its value, as bytes.
pub type Pair = (Vec<u8>, Vec<u8>);

pub fn decode_pairs(mut data: &[u8]) -> Result<Vec<Pair>, Error> {
    fn length(data: &mut &[u8]) -> Result<usize, Error> {
        let first = *data.first().ok_or(Error::Pairs)?;
        if first < 128 {
            data.advance(1);
            return Ok(first as usize);
        }
        if data.len() < 4 {
            return Err(Error::Pairs);
        }
        let n = (data.get_u32() & 0x7fff_ffff) as usize;
        Ok(n)
    }
    let mut pairs = Vec::new();
    while !data.is_empty() {
        let name_len = length(&mut data)?;
        let value_len = length(&mut data)?;
        if data.len() < name_len.saturating_add(value_len) {
            return Err(Error::Pairs);
        }
        let name = data[..name_len].to_vec();
        let value = data[name_len..name_len + value_len].to_vec();
        data.advance(name_len + value_len);
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// Records from a byte stream, as it arrives.
#[derive(Default)]
pub struct Decoder {
    buffer: BytesMut,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds bytes read from the application.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Where to read the application's bytes to (read_buf), without a
    /// copy.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// Bytes held that do not make a whole record yet.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole record, `None` until one has arrived. An error means
    /// the stream cannot be trusted any further.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        {
            if self.buffer.len() < 8 {
                return Ok(None);
            }
            let version = self.buffer[0];
            if version != VERSION {
                return Err(Error::Version(version));
            }
            let kind = self.buffer[1];
            let id = u16::from_be_bytes([self.buffer[2], self.buffer[3]]);
            let len = u16::from_be_bytes([self.buffer[4], self.buffer[5]]) as usize;
            let padding = self.buffer[6] as usize;
            if self.buffer.len() < 8 + len + padding {
                return Ok(None);
            }
            self.buffer.advance(8);
            let content = self.buffer.split_to(len).freeze();
            self.buffer.advance(padding);
            Ok(Some(match kind {
                kind::STDOUT => Record::Stdout { id, data: content },
                kind::STDERR => Record::Stderr { id, data: content },
                kind::END_REQUEST => {
                    if len != 8 {
                        return Err(Error::EndRequestLength(len));
                    }
                    Record::EndRequest {
                        id,
                        app_status: u32::from_be_bytes([
                            content[0], content[1], content[2], content[3],
                        ]),
                        protocol_status: content[4].into(),
                    }
                }
                kind::GET_VALUES_RESULT => Record::GetValuesResult(
                    decode_pairs(&content)?
                        .into_iter()
                        .map(|(n, v)| {
                            (
                                String::from_utf8_lossy(&n).into_owned(),
                                String::from_utf8_lossy(&v).into_owned(),
                            )
                        })
                        .collect(),
                ),
                kind::UNKNOWN_TYPE => Record::UnknownType(content.first().copied().unwrap_or(0)),
                other => return Err(Error::UnexpectedType(other)),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_record(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
        let mut out = vec![VERSION, kind];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        out.push(padding);
        out.push(0);
        out.extend_from_slice(content);
        out.extend(std::iter::repeat_n(0u8, padding as usize));
        out
    }

    /// The PARAMS stream as the specification frames it: the pairs as
    /// one stream of records (empty when there are none), then its end.
    fn params_stream(out: &mut BytesMut, id: u16, pairs: &[(&str, &str)]) {
        let mut body = Vec::new();
        for (name, value) in pairs {
            put_pair(&mut body, name.as_bytes(), value.as_bytes());
        }
        if !body.is_empty() {
            encode_stream(out, kind::PARAMS, id, &body);
        }
        encode_stream(out, kind::PARAMS, id, &[]);
    }

    #[test]
    fn request_records_match_the_records_encoded_one_by_one() {
        let long = "x".repeat(70_000);
        for (pairs, body_follows) in [
            (vec![], true),
            (vec![("A", "bc")], false),
            (
                vec![("SCRIPT_NAME", "/a.php"), ("HTTP_COOKIE", long.as_str())],
                true,
            ),
        ] {
            let mut built = RequestRecords::new(3, true, 16);
            for (name, value) in &pairs {
                built.add(name, value);
            }
            let mut expected = BytesMut::new();
            encode_begin(&mut expected, 3, true);
            params_stream(&mut expected, 3, &pairs);
            if !body_follows {
                encode_stream(&mut expected, kind::STDIN, 3, &[]);
            }
            assert_eq!(built.finish(body_follows), expected.freeze());
        }
    }

    #[test]
    fn a_request_is_encoded_as_the_specification_lays_it_out() {
        let mut out = BytesMut::new();
        encode_begin(&mut out, 1, true);
        assert_eq!(&out[..], &[1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
        let mut request = RequestRecords::new(1, true, 8);
        request.add("A", "bc");
        // BEGIN_REQUEST; the pair 1, 2, "A", "bc" (5 bytes, padded to 8);
        // the end of PARAMS; the end of STDIN.
        assert_eq!(
            &request.finish(false)[..],
            &[
                1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 4, 0, 1, 0, 5, 3, 0, 1, 2, b'A',
                b'b', b'c', 0, 0, 0, 1, 4, 0, 1, 0, 0, 0, 0, 1, 5, 0, 1, 0, 0, 0, 0
            ]
        );
        out.clear();
        encode_stream(&mut out, kind::STDIN, 1, &vec![7u8; 70_000]);
        // Two records: 65535 (+1 padding) and 4465 (+7).
        assert_eq!(out.len(), 8 + 65_535 + 1 + 8 + 4_465 + 7);
    }

    #[test]
    fn long_names_and_values_use_four_byte_lengths_both_ways() {
        let long = "v".repeat(300);
        let mut body = Vec::new();
        put_pair(&mut body, b"NAME", long.as_bytes());
        assert_eq!(&body[..5], &[4, 0x80, 0, 1, 44]);
        let pairs = decode_pairs(&body).unwrap();
        assert_eq!(pairs, vec![(b"NAME".to_vec(), long.into_bytes())]);
        assert_eq!(decode_pairs(&[5, 1, b'a']), Err(Error::Pairs));
        assert_eq!(decode_pairs(&[0x80, 0]), Err(Error::Pairs));
    }

    #[test]
    fn records_are_decoded_whatever_the_pieces_they_arrive_in() {
        let mut stream = app_record(kind::STDOUT, 1, b"Content-Type: text/plain\r\n\r\nhi", 2);
        stream.extend(app_record(kind::STDERR, 1, b"warning", 1));
        stream.extend(app_record(kind::STDOUT, 1, b"", 0));
        stream.extend(app_record(
            kind::END_REQUEST,
            1,
            &[0, 0, 0, 3, 0, 0, 0, 0],
            0,
        ));
        let mut decoder = Decoder::new();
        let mut got = Vec::new();
        for byte in &stream {
            decoder.push(std::slice::from_ref(byte));
            while let Some(record) = decoder.next_record().unwrap() {
                got.push(record);
            }
        }
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0],
            Record::Stdout {
                id: 1,
                data: Bytes::from_static(b"Content-Type: text/plain\r\n\r\nhi")
            }
        );
        assert_eq!(
            got[3],
            Record::EndRequest {
                id: 1,
                app_status: 3,
                protocol_status: ProtocolStatus::RequestComplete
            }
        );
        assert_eq!(decoder.pending(), 0);
    }

    #[test]
    fn broken_streams_are_refused() {
        let mut d = Decoder::new();
        d.push(&[2, 6, 0, 1, 0, 0, 0, 0]);
        assert_eq!(d.next_record(), Err(Error::Version(2)));
        let mut d = Decoder::new();
        d.push(&app_record(kind::PARAMS, 1, b"", 0));
        assert_eq!(d.next_record(), Err(Error::UnexpectedType(kind::PARAMS)));
        let mut d = Decoder::new();
        d.push(&app_record(kind::END_REQUEST, 1, &[0, 0, 0], 0));
        assert_eq!(d.next_record(), Err(Error::EndRequestLength(3)));
        let mut d = Decoder::new();
        d.push(&app_record(kind::GET_VALUES_RESULT, 0, &[9, 9, b'x'], 0));
        assert_eq!(d.next_record(), Err(Error::Pairs));
        let mut d = Decoder::new();
        d.push(&app_record(
            kind::GET_VALUES_RESULT,
            0,
            &[
                14, 1, b'F', b'C', b'G', b'I', b'_', b'M', b'A', b'X', b'_', b'C', b'O', b'N',
                b'N', b'S', b'4',
            ],
            0,
        ));
        assert_eq!(
            d.next_record(),
            Ok(Some(Record::GetValuesResult(vec![(
                "FCGI_MAX_CONNS".into(),
                "4".into()
            )])))
        );
    }
}
