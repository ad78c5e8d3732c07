//! A Server-Sent Events parser (the `text/event-stream` format of the HTML standard, §9.2.6):
//! lines of `field: value`, ended by LF, CRLF or CR; a blank line dispatches the event. Body
//! chunks split lines and events anywhere, so whatever follows the last line end is kept for the
//! next chunk.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when the event had none.
    pub name: String,
    /// The `data:` lines, joined with LF.
    pub data: String,
}

/// Turns body chunks into events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes after the last complete line.
    pending: Vec<u8>,
    /// The `event:` field of the event being read.
    name: Option<String>,
    /// The `data:` lines of the event being read, each followed by LF.
    data: String,
}

impl SseParser {
    /// Feed the next chunk of the body; returns the events it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.pending[start..].iter().position(|&b| b == b'\n' || b == b'\r') {
            let end = start + offset;
            let next = match (self.pending[end], self.pending.get(end + 1)) {
                (b'\r', Some(b'\n')) => end + 2,
                // A CR ending the chunk may be the first half of a CRLF: wait for the next byte.
                (b'\r', None) => break,
                _ => end + 1,
            };
            // Line ends are ASCII, so a line never splits a UTF-8 sequence.
            let line = String::from_utf8_lossy(&self.pending[start..end]).into_owned();
            events.extend(self.line(&line));
            start = next;
        }
        self.pending.drain(..start);
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // Comments (keep-alives, an empty field name), `id` and `retry`: the client never
            // reconnects, so it needs neither the last id nor the reconnection delay.
            _ => {}
        }
        None
    }

    /// A blank line: the event read so far, unless it had no data (the standard drops those).
    fn dispatch(&mut self) -> Option<SseEvent> {
        let name = self.name.take();
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        Some(SseEvent { name: name.unwrap_or_else(|| "message".to_owned()), data })
    }
}

#[cfg(test)]
mod tests {
    use super::{SseEvent, SseParser};

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent { name: name.to_owned(), data: data.to_owned() }
    }

    #[test]
    fn events_split_anywhere_across_chunks_come_out_whole() {
        let body = "event: stdout\nid: 1\ndata: {\"data\":\"a\"}\n\n:keep-alive\n\nevent: end\ndata: {}\n\n";
        let expected = vec![event("stdout", "{\"data\":\"a\"}"), event("end", "{}")];
        for split in 0..body.len() {
            let mut parser = SseParser::default();
            let mut events = parser.feed(&body.as_bytes()[..split]);
            events.extend(parser.feed(&body.as_bytes()[split..]));
            assert_eq!(events, expected, "split at {split}");
        }
        let mut parser = SseParser::default();
        let one_byte_at_a_time: Vec<SseEvent> = body.bytes().flat_map(|b| parser.feed(&[b])).collect();
        assert_eq!(one_byte_at_a_time, expected);
    }

    #[test]
    fn crlf_and_cr_end_lines() {
        let mut parser = SseParser::default();
        let mut events = parser.feed(b"event: a\r\ndata: 1\r");
        events.extend(parser.feed(b"\n\r\nevent: b\rdata: 2\r\r"));
        assert_eq!(events, vec![event("a", "1")], "the last CR may still be half of a CRLF");
        events.extend(parser.feed(b"data: 3\n\n"));
        assert_eq!(events, vec![event("a", "1"), event("b", "2"), event("message", "3")]);
    }

    #[test]
    fn data_lines_join_and_fields_follow_the_standard() {
        let mut parser = SseParser::default();
        let events = parser
            .feed(b"data:x\ndata:  two spaces\ndata\n\nevent: only-a-name\n\nevent: e\ndata: \xc3\xa9\n\n");
        assert_eq!(events, vec![event("message", "x\n two spaces\n"), event("e", "é")]);
    }
}
