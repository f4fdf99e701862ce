//! The Cloud Logging query language, as far as gcloud, Google's clients and this project use it:
//! comparisons (`=`, `!=`, `<`, `<=`, `>`, `>=`, `:` has, `=~` / `!~` RE2 regex, `FIELD:*` presence) on
//! dotted LogEntry paths (quoted components allowed), quoted and unquoted values, `AND`, `OR`, `NOT` and
//! `-`, juxtaposition as `AND`, parentheses (also around values: `resource.type=("a" OR "b")`), `--`
//! comments, bare values as global restrictions, and `log_id("...")`.
//!
//! Semantics follow the language reference: `NOT` binds tightest, then `OR`, then `AND`; strings compare
//! case-insensitively; `severity` compares by its numeric level; `timestamp` / `receiveTimestamp` compare
//! as instants (RFC 3339 or a plain date); a comparison on a missing payload or label field is false, even
//! with `!=`, while fields LogEntry defines compare as their default; repeated fields match when any
//! element does; an unknown top-level field is an error. What this module cannot parse answers 400
//! INVALID_ARGUMENT.

use serde_json::Value;

use crate::clock::parse_instant;
use crate::error::{ApiError, ApiResult};

/// A parsed filter.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Every sub-expression holds (an empty list is "match everything").
    And(Vec<Expr>),
    /// At least one holds.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// `PATH OP VALUE`.
    Cmp {
        /// Field path.
        path: Vec<String>,
        /// Operator.
        op: Op,
        /// Value expression.
        value: ValueExpr,
    },
    /// A bare value: a `:` match against every field.
    Global(String),
    /// `log_id("ID")`.
    LogId(String),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `:`
    Has,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum ValueExpr {
    /// A literal; `quoted` tells `*` (presence) from `"*"`.
    Lit {
        /// Text.
        text: String,
        /// Written in double quotes.
        quoted: bool,
    },
    /// All hold.
    And(Vec<ValueExpr>),
    /// One holds.
    Or(Vec<ValueExpr>),
    /// Negation.
    Not(Box<ValueExpr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Minus,
    Op(Op),
    /// A word or quoted string; `path` holds the dotted components when it can be a field.
    Text {
        text: String,
        quoted: bool,
        path: Vec<String>,
    },
}

fn bad(msg: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Unparseable filter: {msg}"))
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '"' | '=' | '!' | '<' | '>' | ':' | '~' | ',')
}

fn quoted(chars: &[char], i: &mut usize) -> ApiResult<String> {
    // chars[*i] is the opening quote.
    *i += 1;
    let mut out = String::new();
    while *i < chars.len() {
        match chars[*i] {
            '"' => {
                *i += 1;
                return Ok(out);
            }
            '\\' if *i + 1 < chars.len() => {
                let c = chars[*i + 1];
                out.push(match c {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                *i += 2;
            }
            c => {
                out.push(c);
                *i += 1;
            }
        }
    }
    Err(bad("unterminated string"))
}

fn tokenize(s: &str) -> ApiResult<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let op = match two.as_str() {
            "!=" => Some((Op::Ne, 2)),
            "<=" => Some((Op::Le, 2)),
            ">=" => Some((Op::Ge, 2)),
            "=~" => Some((Op::Re, 2)),
            "!~" => Some((Op::NotRe, 2)),
            _ => match c {
                '=' => Some((Op::Eq, 1)),
                '<' => Some((Op::Lt, 1)),
                '>' => Some((Op::Gt, 1)),
                ':' => Some((Op::Has, 1)),
                _ => None,
            },
        };
        if let Some((op, n)) = op {
            out.push(Tok::Op(op));
            i += n;
            continue;
        }
        match c {
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '-' => {
                out.push(Tok::Minus);
                i += 1;
            }
            '"' => {
                let text = quoted(&chars, &mut i)?;
                out.push(Tok::Text {
                    path: vec![text.clone()],
                    text,
                    quoted: true,
                });
            }
            c if is_word_char(c) => {
                let mut raw = String::new();
                let mut path = vec![String::new()];
                while i < chars.len() {
                    let ch = chars[i];
                    if ch == '"' && raw.ends_with('.') {
                        let comp = quoted(&chars, &mut i)?;
                        raw.push_str(&comp);
                        if let Some(last) = path.last_mut() {
                            *last = comp;
                        }
                        continue;
                    }
                    if !is_word_char(ch) {
                        break;
                    }
                    raw.push(ch);
                    if ch == '.' {
                        path.push(String::new());
                    } else if let Some(last) = path.last_mut() {
                        last.push(ch);
                    }
                    i += 1;
                }
                out.push(match raw.as_str() {
                    "AND" => Tok::And,
                    "OR" => Tok::Or,
                    "NOT" => Tok::Not,
                    _ => Tok::Text {
                        text: raw,
                        quoted: false,
                        path,
                    },
                });
            }
            other => return Err(bad(format!("unexpected character `{other}`"))),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
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

    fn starts_term(t: Option<&Tok>) -> bool {
        matches!(
            t,
            Some(Tok::LParen | Tok::Not | Tok::Minus | Tok::Text { .. })
        )
    }

    /// and := or ( [AND] or )*
    fn and(&mut self) -> ApiResult<Expr> {
        let mut items = vec![self.or()?];
        loop {
            if self.peek() == Some(&Tok::And) {
                self.pos += 1;
                items.push(self.or()?);
            } else if Self::starts_term(self.peek()) {
                items.push(self.or()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    /// or := unary ( OR unary )*
    fn or(&mut self) -> ApiResult<Expr> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn unary(&mut self) -> ApiResult<Expr> {
        match self.peek() {
            Some(Tok::Not | Tok::Minus) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> ApiResult<Expr> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.and()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err(bad("missing `)`")),
                }
            }
            Some(Tok::Text { text, quoted, path }) => {
                if !quoted && self.peek() == Some(&Tok::LParen) {
                    return self.function(&text);
                }
                match self.peek() {
                    Some(Tok::Op(op)) => {
                        let op = *op;
                        self.pos += 1;
                        if quoted {
                            return Err(bad(format!("`\"{text}\"` is not a field name")));
                        }
                        if path.iter().any(String::is_empty) {
                            return Err(bad(format!("`{text}` is not a field path")));
                        }
                        check_field(&path)?;
                        let value = self.value()?;
                        Ok(Expr::Cmp { path, op, value })
                    }
                    _ => Ok(Expr::Global(text)),
                }
            }
            Some(t) => Err(bad(format!("unexpected {t:?}"))),
            None => Err(bad("unexpected end of filter")),
        }
    }

    fn function(&mut self, name: &str) -> ApiResult<Expr> {
        self.pos += 1; // (
        let arg = match self.next() {
            Some(Tok::Text { text, .. }) => text,
            _ => return Err(bad(format!("{name}() takes a string argument"))),
        };
        if self.next() != Some(Tok::RParen) {
            return Err(bad(format!("{name}() takes one argument")));
        }
        match name {
            "log_id" => Ok(Expr::LogId(arg)),
            other => Err(bad(format!(
                "function {other}() is not supported by the simulator"
            ))),
        }
    }

    /// A value, or a parenthesised value expression with the same precedence rules.
    fn value(&mut self) -> ApiResult<ValueExpr> {
        match self.next() {
            Some(Tok::Text { text, quoted, .. }) => Ok(ValueExpr::Lit { text, quoted }),
            Some(Tok::LParen) => {
                let v = self.value_and()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(v),
                    _ => Err(bad("missing `)` after value list")),
                }
            }
            _ => Err(bad("expected a value after the operator")),
        }
    }

    fn value_and(&mut self) -> ApiResult<ValueExpr> {
        let mut items = vec![self.value_or()?];
        loop {
            if self.peek() == Some(&Tok::And) {
                self.pos += 1;
                items.push(self.value_or()?);
            } else if Self::starts_term(self.peek()) {
                items.push(self.value_or()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            ValueExpr::And(items)
        })
    }

    fn value_or(&mut self) -> ApiResult<ValueExpr> {
        let mut items = vec![self.value_unary()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.value_unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            ValueExpr::Or(items)
        })
    }

    fn value_unary(&mut self) -> ApiResult<ValueExpr> {
        match self.peek() {
            Some(Tok::Not | Tok::Minus) => {
                self.pos += 1;
                Ok(ValueExpr::Not(Box::new(self.value_unary()?)))
            }
            _ => self.value(),
        }
    }
}

/// Top-level LogEntry fields (anything else is a query error).
const TOP_LEVEL: [&str; 20] = [
    "logName",
    "resource",
    "protoPayload",
    "textPayload",
    "jsonPayload",
    "timestamp",
    "receiveTimestamp",
    "severity",
    "insertId",
    "httpRequest",
    "labels",
    "operation",
    "trace",
    "spanId",
    "traceSampled",
    "sourceLocation",
    "split",
    "errorGroups",
    "log_name",
    "insert_id",
];

/// Fields LogEntry defines: missing ones compare as their default value.
fn defaulted(path: &[String]) -> Option<&'static str> {
    let first = path.first().map(String::as_str).unwrap_or("");
    match (first, path.len()) {
        ("severity", 1) => Some("DEFAULT"),
        (
            "logName" | "log_name" | "insertId" | "insert_id" | "trace" | "spanId" | "textPayload",
            1,
        ) => Some(""),
        ("resource", 2) if path[1] == "type" => Some(""),
        ("operation", 2) if matches!(path[1].as_str(), "id" | "producer" | "first" | "last") => {
            Some(if matches!(path[1].as_str(), "first" | "last") {
                "false"
            } else {
                ""
            })
        }
        _ => None,
    }
}

fn check_field(path: &[String]) -> ApiResult<()> {
    let first = path.first().map(String::as_str).unwrap_or("");
    if TOP_LEVEL.contains(&first) {
        Ok(())
    } else {
        Err(bad(format!("unknown field `{first}`")))
    }
}

/// Parses a filter (empty: match everything).
pub fn parse(filter: &str) -> ApiResult<Expr> {
    if filter.chars().count() > 20_000 {
        return Err(ApiError::invalid(
            "The filter is longer than 20,000 characters.",
        ));
    }
    let toks = tokenize(filter)?;
    if toks.is_empty() {
        return Ok(Expr::And(Vec::new()));
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.and()?;
    if p.pos < p.toks.len() {
        return Err(bad(format!("unexpected {:?}", p.toks[p.pos])));
    }
    validate_regexes(&e)?;
    Ok(e)
}

fn validate_regexes(e: &Expr) -> ApiResult<()> {
    fn lits(v: &ValueExpr, out: &mut Vec<String>) {
        match v {
            ValueExpr::Lit { text, .. } => out.push(text.clone()),
            ValueExpr::And(xs) | ValueExpr::Or(xs) => xs.iter().for_each(|x| lits(x, out)),
            ValueExpr::Not(x) => lits(x, out),
        }
    }
    match e {
        Expr::And(xs) | Expr::Or(xs) => xs.iter().try_for_each(validate_regexes),
        Expr::Not(x) => validate_regexes(x),
        Expr::Cmp {
            op: Op::Re | Op::NotRe,
            value,
            ..
        } => {
            let mut v = Vec::new();
            lits(value, &mut v);
            for r in v {
                regex::Regex::new(&r)
                    .map_err(|e| bad(format!("invalid regular expression `{r}`: {e}")))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Every leaf value at `path` (arrays fan out; keys match exactly, else case-insensitively).
fn leaves<'a>(v: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => {
            for i in items {
                leaves(i, path, out);
            }
        }
        _ if path.is_empty() => out.push(v),
        Value::Object(map) => {
            let key = &path[0];
            let child = map.get(key.as_str()).or_else(|| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
            });
            if let Some(c) = child {
                leaves(c, &path[1..], out);
            }
        }
        _ => {}
    }
}

fn severity_rank(s: &str) -> Option<i64> {
    Some(match s.to_ascii_uppercase().as_str() {
        "DEFAULT" => 0,
        "DEBUG" => 100,
        "INFO" => 200,
        "NOTICE" => 300,
        "WARNING" => 400,
        "ERROR" => 500,
        "CRITICAL" => 600,
        "ALERT" => 700,
        "EMERGENCY" => 800,
        other => return other.parse().ok(),
    })
}

fn ordered(op: Op, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq | Op::Has => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        Op::Re | Op::NotRe => false,
    }
}

/// One leaf against one literal.
fn compare(path: &[String], leaf: &Value, op: Op, want: &str) -> bool {
    let field = path.first().map(String::as_str).unwrap_or("");
    let text = match leaf {
        Value::String(s) => s.clone(),
        Value::Null => "NULL_VALUE".to_owned(),
        other => other.to_string(),
    };
    match op {
        Op::Re | Op::NotRe => {
            let hit = regex::Regex::new(want).is_ok_and(|r| r.is_match(&text));
            return hit == (op == Op::Re);
        }
        _ => {}
    }
    if path.len() == 1 && field == "severity" {
        return match (severity_rank(&text), severity_rank(want)) {
            (Some(a), Some(b)) if op != Op::Has => ordered(op, a.cmp(&b)),
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
    }
    if path.len() == 1 && matches!(field, "timestamp" | "receiveTimestamp") {
        return match (parse_instant(&text), parse_instant(want)) {
            (Some(a), Some(b)) => ordered(op, a.cmp(&b)),
            _ => false,
        };
    }
    match leaf {
        Value::Number(n) => {
            if let (Some(a), Ok(b)) = (n.as_f64(), want.parse::<f64>()) {
                return a.partial_cmp(&b).is_some_and(|o| ordered(op, o));
            }
            false
        }
        Value::Bool(b) => match want.to_ascii_lowercase().as_str() {
            "true" | "false" => ordered(op, b.cmp(&(want.eq_ignore_ascii_case("true")))),
            _ => false,
        },
        _ => {
            let (a, b) = (text.to_lowercase(), want.to_lowercase());
            if op == Op::Has {
                a.contains(&b)
            } else {
                ordered(op, a.cmp(&b))
            }
        }
    }
}

fn eval_value(path: &[String], leaves: &[&Value], op: Op, v: &ValueExpr) -> bool {
    match v {
        ValueExpr::Lit { text, quoted } => {
            if op == Op::Has && text == "*" && !quoted {
                return !leaves.is_empty();
            }
            // `!=` is NOT `=` on a present field (and false on a missing one: no leaves).
            if op == Op::Ne {
                return !leaves.is_empty()
                    && !leaves.iter().any(|l| compare(path, l, Op::Eq, text));
            }
            leaves.iter().any(|l| compare(path, l, op, text))
        }
        ValueExpr::And(xs) => xs.iter().all(|x| eval_value(path, leaves, op, x)),
        ValueExpr::Or(xs) => xs.iter().any(|x| eval_value(path, leaves, op, x)),
        ValueExpr::Not(x) => !eval_value(path, leaves, op, x),
    }
}

fn any_string_has(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s.to_lowercase().contains(needle),
        Value::Array(a) => a.iter().any(|x| any_string_has(x, needle)),
        Value::Object(o) => o.values().any(|x| any_string_has(x, needle)),
        Value::Number(n) => n.to_string().contains(needle),
        _ => false,
    }
}

/// True if the entry matches.
pub fn matches(e: &Expr, entry: &Value) -> bool {
    match e {
        Expr::And(xs) => xs.iter().all(|x| matches(x, entry)),
        Expr::Or(xs) => xs.iter().any(|x| matches(x, entry)),
        Expr::Not(x) => !matches(x, entry),
        Expr::Global(text) => any_string_has(entry, &text.to_lowercase()),
        Expr::LogId(id) => entry
            .get("logName")
            .and_then(Value::as_str)
            .and_then(|l| l.rsplit_once("/logs/"))
            .is_some_and(|(_, log)| log.replace("%2F", "/").replace("%2f", "/") == *id),
        Expr::Cmp { path, op, value } => {
            let mut found = Vec::new();
            leaves(entry, path, &mut found);
            let default;
            if found.is_empty()
                && let Some(d) = defaulted(path)
            {
                default = Value::String(d.to_owned());
                found.push(&default);
            }
            eval_value(path, &found, *op, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Value {
        json!({
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp": "2026-11-29T01:00:00.123456Z",
            "severity": "NOTICE",
            "resource": {"type": "project", "labels": {"project_id": "p"}},
            "protoPayload": {
                "methodName": "SetIamPolicy",
                "authorizationInfo": [{"permission": "resourcemanager.projects.setIamPolicy"}],
                "serviceData": {"policyDelta": {"bindingDeltas": [
                    {"action": "REMOVE", "role": "roles/owner", "member": "user:a@x.com"}
                ]}}
            }
        })
    }

    fn hit(f: &str) -> bool {
        matches(&parse(f).unwrap_or_else(|e| panic!("{f}: {e}")), &entry())
    }

    #[test]
    fn comparisons_quoting_and_case() {
        assert!(hit(r#"protoPayload.methodName="SetIamPolicy""#));
        assert!(hit("protoPayload.methodName=setiampolicy"));
        assert!(hit("resource.type=project"));
        assert!(!hit("resource.type=gke_cluster"));
        assert!(hit(r#"protoPayload.methodName:"IamPol""#));
        assert!(hit(
            "protoPayload.authorizationInfo.permission:setIamPolicy"
        ));
        assert!(hit(
            r#"protoPayload.serviceData.policyDelta.bindingDeltas.action="REMOVE""#
        ));
        assert!(hit(r#"resource.labels."project_id"="p""#));
        assert!(hit("protoPayload.methodName:*"));
        assert!(!hit("protoPayload.status:*"));
        assert!(hit(r#"protoPayload.methodName=~"^Set.*Policy$""#));
        assert!(hit(r#"protoPayload.methodName!~"^Get""#));
    }

    #[test]
    fn severity_and_timestamps_compare_by_value() {
        assert!(hit("severity>=NOTICE"));
        assert!(hit("severity>INFO"));
        assert!(!hit("severity>=WARNING"));
        assert!(hit(r#"timestamp>="2026-11-29T00:00:00Z""#));
        assert!(!hit(
            r#"timestamp<"2026-11-29T02:00:00+01:00" OR timestamp>"2030-01-01""#
        ));
        assert!(hit(r#"timestamp<"2026-11-29T02:00:01+01:00""#));
        assert!(!hit(r#"timestamp>="2026-11-30""#));
        assert!(hit(r#"timestamp>="2026-11-29T02:30:00+02:00""#));
        assert!(!hit(r#"timestamp>="not a time""#));
    }

    #[test]
    fn booleans_precedence_and_missing_fields() {
        assert!(hit(
            r#"resource.type="x" OR protoPayload.methodName="SetIamPolicy""#
        ));
        assert!(!hit(
            r#"resource.type="x" OR protoPayload.methodName="Get""#
        ));
        assert!(hit(r#"NOT resource.type="x""#));
        assert!(hit(r#"-resource.type="x""#));
        assert!(!hit(r#"NOT (resource.type="project" AND severity=NOTICE)"#));
        assert!(hit("resource.type=project severity=NOTICE"));
        assert!(hit("resource.type=(gke_cluster OR project)"));
        // NOT > OR > AND: ("a" OR NOT "b") AND ("c" OR "d")
        assert!(!hit(
            "resource.type=x OR NOT resource.type=project AND severity=NOTICE OR resource.type=project"
        ));
        // Missing payload field: false even with `!=`; NOT of it is true.
        assert!(!hit(r#"jsonPayload.x!="y""#));
        assert!(hit(r#"NOT jsonPayload.x="y""#));
        // Defaulted LogEntry field.
        assert!(hit(r#"operation.producer!="x""#));
        assert!(hit(r#"operation.producer="""#));
        assert!(hit("SetIamPolicy"));
        assert!(hit(r#"log_id("cloudaudit.googleapis.com/activity")"#));
        assert!(hit(
            "severity=NOTICE -- a comment\n AND resource.type=project"
        ));
    }

    #[test]
    fn errors_for_what_cannot_parse() {
        for f in [
            "thud=1",
            "resource.type=",
            "(resource.type=x",
            r#"resource.type="x"#,
            "resource.type=x)",
            r#"SEARCH("x")"#,
            r#"protoPayload.methodName=~"(""#,
        ] {
            assert!(parse(f).is_err(), "{f}");
        }
    }
}
