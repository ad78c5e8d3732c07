//! Glob patterns matched against one file name, as execd's `/files/search` matches them: `*`
//! any run of characters (`**` the same, since a name has no `/`), `?` one character,
//! `[abc]`, `[a-z]` and `[!a-z]` (or `[^a-z]`) one character of a set, `\x` the character `x`.

/// Whether `name` matches `pattern` as a whole.
pub(super) fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the name position it took.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some('*') => {
                while pattern.get(p) == Some(&'*') {
                    p += 1;
                }
                star = Some((p, n));
                continue;
            }
            Some('?') => Some(1),
            Some('[') => class(&pattern[p..], name[n]),
            Some('\\') if p + 1 < pattern.len() => (pattern[p + 1] == name[n]).then_some(2),
            Some(c) => (*c == name[n]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(width), _) => {
                p += width;
                n += 1;
            }
            (None, Some((after, taken))) => {
                p = after;
                n = taken + 1;
                star = Some((after, taken + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Whether `c` is in the class that starts `pattern` (at its `[`): the class's width when it
/// is, none when it is not. An unclosed `[` stands for itself.
fn class(pattern: &[char], c: char) -> Option<usize> {
    let negated = matches!(pattern.get(1), Some('!' | '^'));
    let start = if negated { 2 } else { 1 };
    // A `]` right after the opening is a member, not the end.
    let Some(close) = pattern.iter().skip(start + 1).position(|x| *x == ']').map(|i| i + start + 1) else {
        return (c == '[').then_some(1);
    };
    let set = &pattern[start..close];
    let mut found = false;
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            found |= (set[i]..=set[i + 2]).contains(&c);
            i += 3;
        } else {
            found |= set[i] == c;
            i += 1;
        }
    }
    (found != negated).then_some(close + 1)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("**", "anything.txt"));
        assert!(matches("*", ""));
        assert!(matches("*.txt", "notes.txt"));
        assert!(!matches("*.txt", "notes.txt.bak"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("file?.rs", "file1.rs"));
        assert!(!matches("file?.rs", "file.rs"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(matches("[ab]*", "apple"));
        assert!(!matches("[ab]*", "cherry"));
        assert!(matches("data[0-9].csv", "data7.csv"));
        assert!(!matches("data[!0-9].csv", "data7.csv"));
        assert!(matches("data[^0-9].csv", "dataX.csv"));
        assert!(matches("[]]", "]"));
        assert!(matches("[unclosed", "[unclosed"));
        assert!(matches(r"\*", "*"));
        assert!(!matches(r"\*", "x"));
    }
}
