//! The simulator's own reading of IAM condition expressions: the time-bound subset
//! (`request.time` compared with `timestamp('RFC 3339')` by `<` `<=` `>` `>=` `==` `!=`, either
//! side, `&&`, `||`, `!`, parentheses, `true`, `false`). Anything else (resource attributes, tag
//! functions, extraction functions) is [`Truth::Unknown`], as IAM answers `UNKNOWN_CONDITIONAL`
//! when a condition needs request context it was not given. Kleene logic for `&&` and `||`.
//!
//! Independent of the product's evaluator on purpose: the simulator is the reference the product
//! is checked against.

/// What a condition evaluates to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Depends on something the simulator does not model.
    Unknown,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Open,
    Close,
    Not,
    And,
    Or,
    Cmp(&'static str),
    Ident(String),
    Str(String),
    Comma,
    Other,
}

fn lex(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let two = b.get(i..i + 2).unwrap_or(&[]);
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            _ if two == b"&&" => {
                out.push(Tok::And);
                i += 2;
            }
            _ if two == b"||" => {
                out.push(Tok::Or);
                i += 2;
            }
            _ if two == b"<=" || two == b">=" || two == b"==" || two == b"!=" => {
                out.push(Tok::Cmp(match two {
                    b"<=" => "<=",
                    b">=" => ">=",
                    b"==" => "==",
                    _ => "!=",
                }));
                i += 2;
            }
            b'<' | b'>' => {
                out.push(Tok::Cmp(if c == b'<' { "<" } else { ">" }));
                i += 1;
            }
            b',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            b'!' => {
                out.push(Tok::Not);
                i += 1;
            }
            b'\'' | b'"' => {
                let end = b[i + 1..].iter().position(|x| *x == c);
                match end {
                    Some(n) => {
                        out.push(Tok::Str(s[i + 1..i + 1 + n].to_owned()));
                        i += n + 2;
                    }
                    None => {
                        out.push(Tok::Other);
                        i = b.len();
                    }
                }
            }
            _ if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].to_owned()));
            }
            _ => {
                out.push(Tok::Other);
                i += 1;
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Val {
    Bool(Truth),
    Now,
    Time(i128),
    Opaque,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    now: i128,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self, depth: u32) -> Option<Truth> {
        let mut acc = self.and(depth)?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let rhs = self.and(depth)?;
            acc = match (acc, rhs) {
                (Truth::True, _) | (_, Truth::True) => Truth::True,
                (Truth::Unknown, _) | (_, Truth::Unknown) => Truth::Unknown,
                _ => Truth::False,
            };
        }
        Some(acc)
    }

    fn and(&mut self, depth: u32) -> Option<Truth> {
        let mut acc = self.unary(depth)?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let rhs = self.unary(depth)?;
            acc = match (acc, rhs) {
                (Truth::False, _) | (_, Truth::False) => Truth::False,
                (Truth::Unknown, _) | (_, Truth::Unknown) => Truth::Unknown,
                _ => Truth::True,
            };
        }
        Some(acc)
    }

    fn unary(&mut self, depth: u32) -> Option<Truth> {
        if depth > 64 {
            return None;
        }
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Some(match self.unary(depth + 1)? {
                Truth::True => Truth::False,
                Truth::False => Truth::True,
                Truth::Unknown => Truth::Unknown,
            });
        }
        let lhs = self.operand(depth)?;
        if let Some(Tok::Cmp(op)) = self.peek().cloned() {
            self.pos += 1;
            let rhs = self.operand(depth)?;
            return Some(compare(lhs, op, rhs, self.now));
        }
        Some(match lhs {
            Val::Bool(t) => t,
            _ => Truth::Unknown,
        })
    }

    fn operand(&mut self, depth: u32) -> Option<Val> {
        match self.next()? {
            Tok::Open => {
                let t = self.or(depth + 1)?;
                (self.next()? == Tok::Close).then_some(Val::Bool(t))
            }
            Tok::Ident(name) => {
                if self.peek() == Some(&Tok::Open) {
                    self.pos += 1;
                    if name == "timestamp"
                        && let (Some(Tok::Str(s)), Some(Tok::Close)) = (self.next(), self.next())
                    {
                        // An invalid timestamp never grants: IAM treats the condition as false.
                        return Some(
                            super::clock::parse_instant(&s)
                                .map_or(Val::Bool(Truth::False), Val::Time),
                        );
                    }
                    // Any other call: skip its arguments, its value is unknown.
                    let mut open = 1;
                    while open > 0 {
                        match self.next()? {
                            Tok::Open => open += 1,
                            Tok::Close => open -= 1,
                            _ => {}
                        }
                    }
                    return Some(Val::Opaque);
                }
                Some(match name.as_str() {
                    "request.time" => Val::Now,
                    "true" => Val::Bool(Truth::True),
                    "false" => Val::Bool(Truth::False),
                    _ => Val::Opaque,
                })
            }
            Tok::Str(_) => Some(Val::Opaque),
            _ => None,
        }
    }
}

fn compare(lhs: Val, op: &str, rhs: Val, now: i128) -> Truth {
    let (a, b) = match (lhs, rhs) {
        (Val::Now, Val::Time(t)) => (now, t),
        (Val::Time(t), Val::Now) => (t, now),
        (Val::Bool(Truth::False), _) | (_, Val::Bool(Truth::False)) => return Truth::False,
        _ => return Truth::Unknown,
    };
    let holds = match op {
        "<" => a < b,
        "<=" => a <= b,
        ">" => a > b,
        ">=" => a >= b,
        "==" => a == b,
        _ => a != b,
    };
    if holds { Truth::True } else { Truth::False }
}

/// Evaluates `expression` at `now` (nanoseconds since the epoch).
pub fn evaluate(expression: &str, now: i128) -> Truth {
    if expression.len() > 12_800 {
        return Truth::Unknown;
    }
    let mut p = Parser {
        toks: lex(expression),
        pos: 0,
        now,
    };
    if p.toks.contains(&Tok::Other) {
        return Truth::Unknown;
    }
    match p.or(0) {
        Some(t) if p.pos == p.toks.len() => t,
        _ => Truth::Unknown,
    }
}

/// Evaluates `expression` now.
pub fn evaluate_now(expression: &str) -> Truth {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    evaluate(expression, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i128 = 1_780_000_000 * 1_000_000_000; // 2026-05-28

    #[test]
    fn time_bound_conditions_are_decided_and_others_are_unknown() {
        let e = |s: &str| evaluate(s, NOW);
        assert_eq!(
            e("request.time < timestamp('2026-06-30T00:00:00Z')"),
            Truth::True
        );
        assert_eq!(
            e("request.time < timestamp(\"2026-01-01T00:00:00Z\")"),
            Truth::False
        );
        assert_eq!(
            e("timestamp('2026-01-01T00:00:00Z') < request.time"),
            Truth::True
        );
        assert_eq!(
            e(
                "request.time >= timestamp('2026-01-01T00:00:00Z') && request.time < timestamp('2026-02-01T00:00:00Z')"
            ),
            Truth::False
        );
        assert_eq!(
            e("!(request.time > timestamp('2027-01-01T00:00:00Z'))"),
            Truth::True
        );
        assert_eq!(
            e("resource.name.startsWith('projects/_/buckets/x')"),
            Truth::Unknown
        );
        assert_eq!(
            e(
                "request.time < timestamp('2026-01-01T00:00:00Z') && resource.matchTag('1/env', 'prod')"
            ),
            Truth::False
        );
        assert_eq!(
            e("request.time.getHours('Europe/Berlin') >= 9"),
            Truth::Unknown
        );
        assert_eq!(e("request.time < timestamp('not a time')"), Truth::False);
        assert_eq!(e("(("), Truth::Unknown);
        assert_eq!(e("true || resource.type == 'x'"), Truth::True);
    }
}
