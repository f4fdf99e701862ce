//! IAM conditions, evaluated where IAM's answer is knowable now: the CEL subset time-bound grants use.
//!
//! Supported: `request.time` compared with `timestamp("RFC 3339")` by `<`, `<=`, `>`, `>=`, `==`,
//! `!=` (either side), `&&`, `||`, `!`, parentheses, `true` and `false`. Anything else (resource
//! attributes, functions, other variables) is *undecidable*: the evaluator never guesses, it answers
//! [`Verdict::Unknown`] and the grant stays "conditional, needs review". `&&` and `||` follow Kleene
//! logic, so `expired && resource.name...` is false and `live || anything` is true.
//!
//! Pure: the time is an argument. Besides the verdict now, [`evaluate`] says when a grant that holds
//! now stops holding (`expires_at`), so a time-bound grant is reported with its end.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a condition evaluates to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// True now; `Some(t)`: false from `t` on (a time-bound grant ending at `t`).
    True {
        /// When it stops being true, if it does.
        expires_at: Option<SystemTime>,
    },
    /// False now (an expired or not-yet-started grant): it grants nothing.
    False,
    /// Not decidable by this evaluator.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tri {
    T,
    F,
    U,
}

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Bool(bool),
    /// `request.time OP t` (normalised so `request.time` is on the left).
    Time(Op, i128),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Opaque,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn flip(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::Le => Self::Ge,
            Self::Gt => Self::Lt,
            Self::Ge => Self::Le,
            other => other,
        }
    }

    fn holds(self, a: i128, b: i128) -> bool {
        match self {
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Gt => a > b,
            Self::Ge => a >= b,
            Self::Eq => a == b,
            Self::Ne => a != b,
        }
    }
}

/// Longest expression looked at (IAM allows 12,800 characters).
const MAX_EXPRESSION: usize = 12_800;
/// Deepest nesting parsed; deeper is undecidable, never a stack overflow.
const MAX_DEPTH: usize = 64;

/// Evaluates `expression` at `now`.
pub fn evaluate(expression: &str, now: SystemTime) -> Verdict {
    if expression.len() > MAX_EXPRESSION {
        return Verdict::Unknown;
    }
    let tokens = match tokenize(expression) {
        Some(t) => t,
        None => return Verdict::Unknown,
    };
    let mut parser = Parser { tokens, pos: 0 };
    let Some(expr) = parser.or(0) else {
        return Verdict::Unknown;
    };
    if parser.pos != parser.tokens.len() {
        return Verdict::Unknown;
    }
    let at = micros(now);
    match eval(&expr, at) {
        Tri::F => Verdict::False,
        Tri::U => Verdict::Unknown,
        Tri::T => {
            // The expression is piecewise constant in time, changing only at its timestamps: the end
            // is the first instant after now at which it is no longer true.
            let mut instants: Vec<i128> = Vec::new();
            collect(&expr, &mut instants);
            instants.retain(|t| *t >= at);
            instants.sort_unstable();
            instants.dedup();
            let expires_at = instants
                .iter()
                .flat_map(|t| [*t, *t + 1])
                .filter(|t| *t > at)
                .find(|t| eval(&expr, *t) != Tri::T)
                .map(from_micros);
            Verdict::True { expires_at }
        }
    }
}

fn eval(e: &Expr, at: i128) -> Tri {
    match e {
        Expr::Bool(true) => Tri::T,
        Expr::Bool(false) => Tri::F,
        Expr::Time(op, t) => {
            if op.holds(at, *t) {
                Tri::T
            } else {
                Tri::F
            }
        }
        Expr::Not(inner) => match eval(inner, at) {
            Tri::T => Tri::F,
            Tri::F => Tri::T,
            Tri::U => Tri::U,
        },
        Expr::And(a, b) => match (eval(a, at), eval(b, at)) {
            (Tri::F, _) | (_, Tri::F) => Tri::F,
            (Tri::T, Tri::T) => Tri::T,
            _ => Tri::U,
        },
        Expr::Or(a, b) => match (eval(a, at), eval(b, at)) {
            (Tri::T, _) | (_, Tri::T) => Tri::T,
            (Tri::F, Tri::F) => Tri::F,
            _ => Tri::U,
        },
        Expr::Opaque => Tri::U,
    }
}

fn collect(e: &Expr, out: &mut Vec<i128>) {
    match e {
        Expr::Time(_, t) => out.push(*t),
        Expr::Not(a) => collect(a, out),
        Expr::And(a, b) | Expr::Or(a, b) => {
            collect(a, out);
            collect(b, out);
        }
        Expr::Bool(_) | Expr::Opaque => {}
    }
}

fn micros(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i128,
        Err(e) => -(e.duration().as_micros() as i128),
    }
}

fn from_micros(us: i128) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros((-us) as u64)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Op(Op),
    Str(String),
    Ident(String),
    Dot,
    Comma,
    Other,
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '.' => {
                out.push(Tok::Dot);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '&' if next == Some('&') => {
                out.push(Tok::And);
                i += 2
            }
            '|' if next == Some('|') => {
                out.push(Tok::Or);
                i += 2
            }
            '<' | '>' | '=' | '!' => {
                let eq = next == Some('=');
                let tok = match (c, eq) {
                    ('<', true) => Tok::Op(Op::Le),
                    ('<', false) => Tok::Op(Op::Lt),
                    ('>', true) => Tok::Op(Op::Ge),
                    ('>', false) => Tok::Op(Op::Gt),
                    ('=', true) => Tok::Op(Op::Eq),
                    ('!', true) => Tok::Op(Op::Ne),
                    ('!', false) => Tok::Not,
                    _ => return None,
                };
                out.push(tok);
                i += if eq { 2 } else { 1 };
            }
            '"' | '\'' => {
                let quote = c;
                let mut j = i + 1;
                let mut text = String::new();
                while j < chars.len() && chars[j] != quote {
                    if chars[j] == '\\' {
                        return None; // escapes: undecidable rather than misread
                    }
                    text.push(chars[j]);
                    j += 1;
                }
                if j >= chars.len() {
                    return None;
                }
                out.push(Tok::Str(text));
                i = j + 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = i;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                out.push(Tok::Ident(chars[i..j].iter().collect()));
                i = j;
            }
            _ => {
                out.push(Tok::Other);
                i += 1;
            }
        }
    }
    Some(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

/// A comparison operand.
enum Operand {
    RequestTime,
    Timestamp(i128),
    Opaque,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self, depth: usize) -> Option<Expr> {
        let mut left = self.and(depth)?;
        while self.eat(&Tok::Or) {
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Some(left)
    }

    fn and(&mut self, depth: usize) -> Option<Expr> {
        let mut left = self.unary(depth)?;
        while self.eat(&Tok::And) {
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Some(left)
    }

    fn unary(&mut self, depth: usize) -> Option<Expr> {
        if depth > MAX_DEPTH {
            return None;
        }
        if self.eat(&Tok::Not) {
            return Some(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.eat(&Tok::LParen) {
            let inner = self.or(depth + 1)?;
            if !self.eat(&Tok::RParen) {
                return None;
            }
            return Some(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Option<Expr> {
        if let Some(Tok::Ident(word)) = self.peek() {
            let word = word.clone();
            if (word == "true" || word == "false")
                && !matches!(self.tokens.get(self.pos + 1), Some(Tok::Op(_) | Tok::Dot))
            {
                self.pos += 1;
                return Some(Expr::Bool(word == "true"));
            }
        }
        let left = self.operand()?;
        let Some(Tok::Op(op)) = self.peek().cloned() else {
            // A bare call or attribute used as a boolean: undecidable.
            return matches!(left, Operand::Opaque).then_some(Expr::Opaque);
        };
        self.pos += 1;
        let right = self.operand()?;
        Some(match (left, right) {
            (Operand::RequestTime, Operand::Timestamp(t)) => Expr::Time(op, t),
            (Operand::Timestamp(t), Operand::RequestTime) => Expr::Time(op.flip(), t),
            _ => Expr::Opaque,
        })
    }

    /// An operand: `request.time`, `timestamp("...")`, or anything else (consumed, opaque).
    fn operand(&mut self) -> Option<Operand> {
        let start = self.pos;
        let mut path: Vec<String> = Vec::new();
        let mut called = false;
        let mut call_args: Vec<Tok> = Vec::new();
        loop {
            match self.peek().cloned() {
                Some(Tok::Ident(w)) if path.is_empty() || self.tokens[self.pos - 1] == Tok::Dot => {
                    path.push(w);
                    self.pos += 1;
                }
                Some(Tok::Str(_)) if path.is_empty() && self.pos == start => {
                    self.pos += 1;
                    return Some(Operand::Opaque);
                }
                Some(Tok::Dot) if !path.is_empty() => self.pos += 1,
                Some(Tok::LParen) if !path.is_empty() => {
                    // A call: take its arguments up to the matching parenthesis.
                    self.pos += 1;
                    let mut level = 1;
                    while let Some(t) = self.peek().cloned() {
                        self.pos += 1;
                        match t {
                            Tok::LParen => level += 1,
                            Tok::RParen => {
                                level -= 1;
                                if level == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        call_args.push(t);
                    }
                    if level != 0 {
                        return None;
                    }
                    called = true;
                    if !matches!(self.peek(), Some(Tok::Dot)) {
                        break;
                    }
                }
                _ => break,
            }
        }
        if self.pos == start {
            return None;
        }
        let joined = path.join(".");
        if !called && joined == "request.time" {
            return Some(Operand::RequestTime);
        }
        if called
            && joined == "timestamp"
            && let [Tok::Str(s)] = call_args.as_slice()
        {
            return Some(parse_rfc3339(s).map_or(Operand::Opaque, Operand::Timestamp));
        }
        Some(Operand::Opaque)
    }
}

/// An RFC 3339 timestamp (as written in `expires_at`) as an instant; `None` if it is not one.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    parse_rfc3339(s).map(from_micros)
}

/// Microseconds since the epoch of an RFC 3339 timestamp (`2026-06-30T00:00:00Z`, fractional seconds
/// and `+hh:mm` offsets allowed).
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    // Every valid timestamp is ASCII; checking first makes every slice below land on a char boundary.
    if !s.is_ascii() {
        return None;
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros_frac: i64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        let padded = format!("{digits:0<6}");
        micros_frac = padded[..6].parse().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let h: i64 = o[1..3].parse().ok()?;
            let m: i64 = o[4..6].parse().ok()?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(i128::from(secs) * 1_000_000 + i128::from(micros_frac))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        from_micros(parse_rfc3339(s).unwrap())
    }

    const NOW: &str = "2026-12-01T00:00:00Z";

    #[test]
    fn an_expired_time_bound_grant_is_false() {
        let v = evaluate("request.time < timestamp('2026-06-30T00:00:00Z')", at(NOW));
        assert_eq!(v, Verdict::False);
    }

    #[test]
    fn a_live_time_bound_grant_is_true_until_its_end() {
        let v = evaluate(
            "request.time < timestamp(\"2027-03-31T00:00:00Z\")",
            at(NOW),
        );
        assert_eq!(
            v,
            Verdict::True {
                expires_at: Some(at("2027-03-31T00:00:00Z"))
            }
        );
    }

    #[test]
    fn a_window_ends_at_its_earliest_bound_and_an_unstarted_one_is_false() {
        let e = "request.time >= timestamp('2026-01-01T00:00:00Z') && request.time <= timestamp('2027-01-01T00:00:00Z')";
        let Verdict::True {
            expires_at: Some(end),
        } = evaluate(e, at(NOW))
        else {
            panic!()
        };
        assert!(end > at("2027-01-01T00:00:00Z"));
        assert!(end < at("2027-01-01T00:00:01Z"));
        assert_eq!(
            evaluate("timestamp('2027-01-01T00:00:00Z') < request.time", at(NOW)),
            Verdict::False
        );
    }

    #[test]
    fn what_cannot_be_known_now_is_unknown_and_kleene_logic_still_decides() {
        let now = at(NOW);
        assert_eq!(
            evaluate("resource.name.startsWith('projects/_/buckets/x')", now),
            Verdict::Unknown
        );
        assert_eq!(
            evaluate(
                "request.time < timestamp('2026-06-30T00:00:00Z') && resource.name == 'x'",
                now
            ),
            Verdict::False
        );
        assert!(matches!(
            evaluate(
                "request.time < timestamp('2027-06-30T00:00:00Z') || resource.type == 'x'",
                now
            ),
            Verdict::True { .. }
        ));
        assert_eq!(
            evaluate(
                "request.time < timestamp('2027-06-30T00:00:00Z') && resource.type == 'x'",
                now
            ),
            Verdict::Unknown
        );
        assert_eq!(
            evaluate("request.time.getHours() < 17", now),
            Verdict::Unknown
        );
        assert_eq!(
            evaluate("request.time < timestamp('not a time')", now),
            Verdict::Unknown
        );
        assert_eq!(evaluate("(((", now), Verdict::Unknown);
        assert_eq!(evaluate("", now), Verdict::Unknown);
    }

    #[test]
    fn negation_and_parentheses_are_honoured() {
        let now = at(NOW);
        assert!(matches!(
            evaluate("!(request.time > timestamp('2027-01-01T00:00:00Z'))", now),
            Verdict::True {
                expires_at: Some(_)
            }
        ));
        assert_eq!(evaluate("!true", now), Verdict::False);
        assert_eq!(
            evaluate(
                "(true) && (request.time < timestamp('2020-01-01T00:00:00+02:00'))",
                now
            ),
            Verdict::False
        );
    }

    #[test]
    fn a_timestamp_with_non_ascii_text_is_undecidable_not_a_panic() {
        // Found by the fuzzer: a multi-byte character inside the offset.
        let e = "request.time < timestamp('2027-01-01T00:00:00+0\u{3fd}Ap')";
        assert_eq!(evaluate(e, at(NOW)), Verdict::Unknown);
        assert_eq!(parse_rfc3339("2027-01-01T00:00:00\u{e9}Z"), None);
    }

    #[test]
    fn timestamps_parse_with_fractions_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00Z"),
            Some(951_868_800 * 1_000_000)
        );
        assert_eq!(parse_rfc3339("2000-13-01T00:00:00Z"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_input_gives_an_answer_and_never_panics(s in ".{0,300}") {
            let _ = evaluate(&s, at(NOW));
        }

        #[test]
        fn a_single_bound_is_true_exactly_before_it(offset in -10_000_000i64..10_000_000) {
            let now = at(NOW);
            let bound = if offset >= 0 {
                now + Duration::from_secs(offset as u64)
            } else {
                now - Duration::from_secs((-offset) as u64)
            };
            let stamp = crate::clock::rfc3339(bound, crate::clock::Precision::Millis);
            let v = evaluate(&format!("request.time < timestamp('{stamp}')"), now);
            if offset > 0 {
                proptest::prop_assert_eq!(v, Verdict::True { expires_at: Some(bound) });
            } else {
                proptest::prop_assert_eq!(v, Verdict::False);
            }
        }
    }
}
