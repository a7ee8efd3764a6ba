//! Just enough HTTP/1.1 for KMS clients: one request at a time per connection (keep-alive
//! honoured), `Content-Length` bodies only, named size limits, and the response head.

use std::io::{self, Read, Write};
use zeroize::Zeroizing;

/// Largest request head (request line and headers). A SigV4-signed KMS request head is under
/// 2 KiB (seven headers, a 200-byte Authorization, a session token of up to ~1.3 KiB).
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most request headers.
pub(crate) const MAX_HEADERS: usize = 64;

/// Largest request body. The largest KMS request here is a Recipient carrying an attestation
/// document of up to 262144 bytes (botocore KMS model, `AttestationDocumentType` max), i.e.
/// 349528 base64 characters, plus a 6144-byte ciphertext and the JSON around them.
pub(crate) const MAX_BODY_BYTES: usize = 512 * 1024;

/// One request.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) headers: Vec<(String, String)>,
    /// May hold a plaintext (Encrypt): zeroized on drop.
    pub(crate) body: Zeroizing<Vec<u8>>,
    pub(crate) keep_alive: bool,
}

impl Request {
    /// The value of the only header called `name`, if there is exactly one.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        match (found.next(), found.next()) {
            (Some((_, v)), None) => Some(v),
            _ => None,
        }
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client closed the connection between requests.
    Closed,
    /// The socket or TLS failed.
    Io(io::Error),
    /// Not a request we accept; answered with this status and message, then the connection
    /// is closed.
    Refused(u16, &'static str),
}

/// Reads one request. `buffer` carries bytes read past the previous request.
pub(crate) fn read_request<S: Read>(
    stream: &mut S,
    buffer: &mut Zeroizing<Vec<u8>>,
) -> Result<Request, ReadError> {
    let mut chunk = Zeroizing::new([0u8; 8192]);
    let head_len = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(buffer) {
            Ok(httparse::Status::Complete(len)) => break len,
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ReadError::Refused(431, "more than 64 request headers"));
            }
            Err(_) => return Err(ReadError::Refused(400, "malformed HTTP/1.1 request")),
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(ReadError::Refused(431, "request head larger than 16 KiB"));
        }
        let n = stream.read(&mut chunk[..]).map_err(ReadError::Io)?;
        if n == 0 {
            return if buffer.is_empty() {
                Err(ReadError::Closed)
            } else {
                Err(ReadError::Refused(400, "connection closed mid-request"))
            };
        }
        buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed
        .parse(buffer)
        .map_err(|_| ReadError::Refused(400, "malformed HTTP/1.1 request"))?;
    let method = parsed.method.unwrap_or_default().to_owned();
    let target = parsed.path.unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let version = parsed.version.unwrap_or(1);
    let mut owned = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| ReadError::Refused(400, "a header value is not UTF-8"))?;
        owned.push((h.name.to_owned(), value.to_owned()));
    }
    let request_path = path.to_owned();
    let request_query = query.to_owned();

    let find = |name: &str| {
        owned
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    if !find("transfer-encoding").is_empty() {
        return Err(ReadError::Refused(
            501,
            "Transfer-Encoding is not supported; send Content-Length",
        ));
    }
    let content_length = match find("content-length").as_slice() {
        [] => 0,
        [one] => one
            .trim()
            .parse::<usize>()
            .map_err(|_| ReadError::Refused(400, "Content-Length is not a number"))?,
        _ => return Err(ReadError::Refused(400, "Content-Length is repeated")),
    };
    if content_length > MAX_BODY_BYTES {
        return Err(ReadError::Refused(413, "request body larger than 512 KiB"));
    }
    let connection = find("connection").join(",").to_ascii_lowercase();
    let keep_alive = if version == 0 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };

    buffer.drain(..head_len);
    while buffer.len() < content_length {
        let n = stream.read(&mut chunk[..]).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Refused(400, "connection closed mid-body"));
        }
        buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let rest = buffer.split_off(content_length);
    let body = Zeroizing::new(std::mem::replace(&mut **buffer, rest));
    Ok(Request {
        method,
        path: request_path,
        query: request_query,
        headers: owned,
        body,
        keep_alive,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Error",
    }
}

/// Writes a response with `Content-Length` and the given headers.
pub(crate) fn write_response<S: Write>(
    stream: &mut S,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// The IMF-fixdate form of `Date` (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(at: ccc_sdk::time::UnixMillis) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let d = at.to_datetime();
    let weekday = DAYS
        .get(usize::try_from(at.0 / 86_400_000 % 7).unwrap_or(0))
        .unwrap_or(&"Thu");
    let month = MONTHS
        .get(usize::try_from(d.month.saturating_sub(1)).unwrap_or(0))
        .unwrap_or(&"Jan");
    format!(
        "{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        d.day, d.year, d.hour, d.minute, d.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_sdk::time::UnixMillis;

    #[test]
    fn http_dates_match_rfc_9110_examples() {
        // RFC 9110 §5.6.7's example, and the SigV4 suite's time.
        assert_eq!(
            http_date(UnixMillis(784_111_777_000)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            http_date(UnixMillis(1_440_938_160_000)),
            "Sun, 30 Aug 2015 12:36:00 GMT"
        );
        assert_eq!(http_date(UnixMillis(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    fn read_all(input: &[u8]) -> Vec<Result<Request, ReadError>> {
        let mut stream = input;
        let mut buffer = Zeroizing::new(Vec::new());
        let mut out = Vec::new();
        loop {
            let r = read_request(&mut stream, &mut buffer);
            let stop = r.is_err();
            out.push(r);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn pipelined_requests_and_limits() {
        let two = b"POST /?a=b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}\
                    POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc";
        let out = read_all(two);
        assert_eq!(out.len(), 3);
        let first = out[0].as_ref().unwrap();
        assert_eq!((first.path.as_str(), first.query.as_str()), ("/", "a=b"));
        assert_eq!(&first.body[..], b"{}");
        assert!(first.keep_alive);
        let second = out[1].as_ref().unwrap();
        assert_eq!(&second.body[..], b"abc");
        assert!(!second.keep_alive);
        assert_eq!(second.header("host"), Some("x"));
        assert!(matches!(out[2], Err(ReadError::Closed)));

        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        assert!(matches!(
            read_all(big.as_bytes())[0],
            Err(ReadError::Refused(413, _))
        ));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(matches!(
            read_all(chunked)[0],
            Err(ReadError::Refused(501, _))
        ));
        let huge_head = format!("POST / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(
            read_all(huge_head.as_bytes())[0],
            Err(ReadError::Refused(431, _))
        ));
        assert!(matches!(
            read_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")[0],
            Err(ReadError::Refused(400, _))
        ));
        assert!(matches!(
            read_all(b"\x00\x01garbage\r\n\r\n")[0],
            Err(ReadError::Refused(400, _))
        ));
    }
}
