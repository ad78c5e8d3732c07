//! A kernel's control messages: JSON objects, one a line, split out of the bytes of its control
//! pipe as they come.

use serde_json::{json, Value};

/// The longest control message kept; a larger one (a huge result) becomes
/// `{"type": "too_large"}`, and the run's `output_truncated` says so.
pub(crate) const MAX_CONTROL_LINE: usize = 8 << 20;

/// Splits a kernel's control bytes into JSON messages, one per line.
#[derive(Default)]
pub(crate) struct ControlLines {
    /// Bytes of a message not yet ending in a newline.
    partial: Vec<u8>,
    /// Whether the message being read is too long to keep.
    skipping: bool,
}

impl ControlLines {
    /// The messages completed by `bytes`. Lines that are not JSON are skipped.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<Value> {
        let mut messages = Vec::new();
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = piece.ends_with(b"\n");
            if !self.skipping {
                self.partial.extend_from_slice(piece);
                self.skipping = self.partial.len() > MAX_CONTROL_LINE;
            }
            if self.skipping {
                self.partial.clear();
                if complete {
                    self.skipping = false;
                    messages.push(json!({"type": "too_large"}));
                }
            } else if complete {
                if let Ok(message) = serde_json::from_slice::<Value>(&self.partial) {
                    messages.push(message);
                }
                self.partial.clear();
            }
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{ControlLines, MAX_CONTROL_LINE};

    #[test]
    fn control_messages_split_across_chunks_arrive_whole() {
        let mut lines = ControlLines::default();
        assert!(lines.push(br#"{"type": "res"#).is_empty());
        assert_eq!(
            lines.push(b"ult\"}\n{\"type\": \"end\"}\nnot json\n{"),
            [json!({"type": "result"}), json!({"type": "end"})]
        );
        assert_eq!(lines.push(b"}\n"), [json!({})]);
    }

    #[test]
    fn an_oversized_message_is_replaced_and_the_next_one_kept() {
        let mut lines = ControlLines::default();
        let big = vec![b'x'; MAX_CONTROL_LINE / 2];
        assert!(lines.push(&big).is_empty());
        assert!(lines.push(&big).is_empty());
        assert!(lines.push(&big).is_empty());
        assert_eq!(
            lines.push(b"x\n{\"type\": \"end\"}\n"),
            [json!({"type": "too_large"}), json!({"type": "end"})]
        );
        assert!(lines.partial.is_empty());
    }
}
