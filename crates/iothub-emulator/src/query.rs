//! The subset of the IoT Hub query language the emulator understands
//! (<https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-query-language>):
//! `SELECT * FROM devices [WHERE c AND ...]` and
//! `SELECT COUNT() AS name FROM devices [WHERE ...]`, where each condition `c` is an equality
//! (`a = v`), a string comparison on `deviceId` (`<`, `<=`, `>`, `>=`, `!=`, `<>`), or
//! `STARTSWITH(deviceId, 'prefix')` — the language's comparison operators and string
//! function that a partitioned read of the registry uses. Strings compare ordinally (by
//! code point, case-sensitive), as device ids are case-sensitive 7-bit ASCII. Hand-written
//! because the dialect is tiny and no maintained crate parses it.

use std::ops::Bound;

use serde_json::Value;

use crate::model::DeviceRecord;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Selection {
    Twins,
    Count { alias: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    NotEqual,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition {
    Equals {
        path: Vec<String>,
        value: Value,
    },
    /// A string comparison on `deviceId`.
    DeviceIdCompare {
        op: Comparison,
        value: String,
    },
    /// `STARTSWITH(deviceId, prefix)`.
    DeviceIdStartsWith {
        prefix: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub(crate) selection: Selection,
    pub(crate) conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Symbol(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let quote = c;
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some(&ch) if ch == quote => {
                        if chars.get(i + 1) == Some(&quote) {
                            value.push(quote);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&ch) => {
                        value.push(ch);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Text(value));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            let number = literal
                .parse::<f64>()
                .map_err(|_| format!("invalid number {literal}"))?;
            tokens.push(Token::Number(number));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | '.' | '-'))
            {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else if matches!(c, '*' | '(' | ')' | '=' | ',') {
            tokens.push(Token::Symbol(c));
            i += 1;
        } else if matches!(c, '<' | '>' | '!') {
            // `<`, `<=`, `<>`, `>`, `>=`, `!=` become one symbol each: the second character
            // is folded into a distinct char so the parser matches on one token.
            let next = chars.get(i + 1).copied();
            let (symbol, width) = match (c, next) {
                ('<', Some('=')) => ('≤', 2),
                ('<', Some('>')) | ('!', Some('=')) => ('≠', 2),
                ('>', Some('=')) => ('≥', 2),
                ('<', _) => ('<', 1),
                ('>', _) => ('>', 1),
                _ => return Err("unexpected character '!'".into()),
            };
            tokens.push(Token::Symbol(symbol));
            i += width;
        } else {
            return Err(format!("unexpected character '{c}'"));
        }
    }
    Ok(tokens)
}

struct Cursor {
    tokens: Vec<Token>,
    at: usize,
}

impl Cursor {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&mut self, word: &str) -> Result<(), String> {
        match self.next() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(word) => Ok(()),
            _ => Err(format!("expected {word}")),
        }
    }

    fn symbol(&mut self, symbol: char) -> Result<(), String> {
        match self.next() {
            Some(Token::Symbol(s)) if s == symbol => Ok(()),
            _ => Err(format!("expected '{symbol}'")),
        }
    }
}

pub(crate) fn parse(text: &str) -> Result<Query, String> {
    let mut cursor = Cursor {
        tokens: tokenize(text)?,
        at: 0,
    };
    cursor.keyword("SELECT")?;
    let selection = match cursor.next() {
        Some(Token::Symbol('*')) => Selection::Twins,
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("COUNT") => {
            cursor.symbol('(')?;
            cursor.symbol(')')?;
            cursor.keyword("AS")?;
            match cursor.next() {
                Some(Token::Word(alias)) if !alias.contains('.') => Selection::Count { alias },
                _ => return Err("expected an alias after AS".into()),
            }
        }
        _ => return Err("only SELECT * and SELECT COUNT() AS <alias> are supported".into()),
    };
    cursor.keyword("FROM")?;
    match cursor.next() {
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("devices") => {}
        _ => return Err("only FROM devices is supported".into()),
    }
    let mut conditions = Vec::new();
    match cursor.next() {
        None => {}
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("WHERE") => loop {
            conditions.push(condition(&mut cursor)?);
            match cursor.next() {
                None => break,
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("AND") => {}
                _ => return Err("only AND between equality conditions is supported".into()),
            }
        },
        _ => return Err("expected WHERE or the end of the query".into()),
    }
    Ok(Query {
        selection,
        conditions,
    })
}

fn condition(cursor: &mut Cursor) -> Result<Condition, String> {
    let field = match cursor.next() {
        Some(Token::Word(field)) => field,
        _ => return Err("expected a property name".into()),
    };
    if field.eq_ignore_ascii_case("STARTSWITH") {
        cursor.symbol('(')?;
        match cursor.next() {
            Some(Token::Word(w)) if strip_devices(&w) == "deviceId" => {}
            _ => return Err("STARTSWITH is supported on deviceId only".into()),
        }
        cursor.symbol(',')?;
        let prefix = match cursor.next() {
            Some(Token::Text(text)) => text,
            _ => return Err("STARTSWITH takes a string literal".into()),
        };
        cursor.symbol(')')?;
        return Ok(Condition::DeviceIdStartsWith { prefix });
    }
    let field = strip_devices(&field).to_string();
    let path: Vec<String> = field.split('.').map(str::to_string).collect();
    let supported = match path.first().map(String::as_str) {
        Some("deviceId" | "status" | "connectionState" | "modelId" | "authenticationType") => {
            path.len() == 1
        }
        Some("tags") => path.len() >= 2,
        Some("capabilities") => path.len() == 2 && path[1] == "iotEdge",
        _ => false,
    };
    if !supported {
        return Err(format!(
            "filtering on '{field}' is not supported by the emulator"
        ));
    }
    let op = match cursor.next() {
        Some(Token::Symbol('=')) => None,
        Some(Token::Symbol('<')) => Some(Comparison::Less),
        Some(Token::Symbol('≤')) => Some(Comparison::LessOrEqual),
        Some(Token::Symbol('>')) => Some(Comparison::Greater),
        Some(Token::Symbol('≥')) => Some(Comparison::GreaterOrEqual),
        Some(Token::Symbol('≠')) => Some(Comparison::NotEqual),
        _ => return Err("expected a comparison operator".into()),
    };
    let value = match cursor.next() {
        Some(Token::Text(text)) => Value::from(text),
        Some(Token::Number(n)) => serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| "invalid number".to_string())?,
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
        _ => return Err("expected a literal after the operator".into()),
    };
    match op {
        None => Ok(Condition::Equals { path, value }),
        Some(op) => match (path[0].as_str(), value) {
            ("deviceId", Value::String(value)) => Ok(Condition::DeviceIdCompare { op, value }),
            _ => Err("comparisons other than '=' are supported on deviceId strings only".into()),
        },
    }
}

fn strip_devices(field: &str) -> &str {
    field.strip_prefix("devices.").unwrap_or(field)
}

/// The smallest string greater than every string starting with `prefix`, when there is one
/// (the prefix with its last character incremented, dropping characters that cannot be).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The tighter of two lower bounds.
fn max_lower(a: Bound<String>, b: Bound<String>) -> Bound<String> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x > y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// The tighter of two upper bounds.
fn min_upper(a: Bound<String>, b: Bound<String>) -> Bound<String> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x < y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

fn values_equal(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => actual == expected,
    }
}

impl Query {
    pub(crate) fn matches(&self, device: &DeviceRecord) -> bool {
        self.conditions
            .iter()
            .all(|condition| condition.matches(device))
    }

    /// The range of deviceIds the conditions allow, so a scan visits only that range: a
    /// partitioned read of a large registry must not cost a full scan per page.
    pub(crate) fn device_id_bounds(&self) -> (Bound<String>, Bound<String>) {
        let mut lower = Bound::Unbounded;
        let mut upper = Bound::Unbounded;
        for condition in &self.conditions {
            let (low, high) = match condition {
                Condition::Equals { path, value } if path[0] == "deviceId" => match value {
                    Value::String(v) => (Bound::Included(v.clone()), Bound::Included(v.clone())),
                    // A deviceId is a string: nothing equals a number or a bool.
                    _ => (
                        Bound::Excluded(String::new()),
                        Bound::Excluded(String::new()),
                    ),
                },
                Condition::Equals { .. } => continue,
                Condition::DeviceIdCompare { op, value } => match op {
                    Comparison::Less => (Bound::Unbounded, Bound::Excluded(value.clone())),
                    Comparison::LessOrEqual => (Bound::Unbounded, Bound::Included(value.clone())),
                    Comparison::Greater => (Bound::Excluded(value.clone()), Bound::Unbounded),
                    Comparison::GreaterOrEqual => {
                        (Bound::Included(value.clone()), Bound::Unbounded)
                    }
                    Comparison::NotEqual => continue,
                },
                Condition::DeviceIdStartsWith { prefix } => (
                    Bound::Included(prefix.clone()),
                    prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded),
                ),
            };
            lower = max_lower(lower, low);
            upper = min_upper(upper, high);
        }
        (lower, upper)
    }

    /// Whether every condition is on deviceId alone (a count can then be computed from the
    /// id range without building the devices).
    pub(crate) fn only_device_id_range(&self) -> bool {
        self.conditions.iter().all(|condition| match condition {
            Condition::Equals { path, value } => path[0] == "deviceId" && value.is_string(),
            Condition::DeviceIdCompare { op, .. } => *op != Comparison::NotEqual,
            Condition::DeviceIdStartsWith { .. } => true,
        })
    }
}

impl Condition {
    fn matches(&self, device: &DeviceRecord) -> bool {
        let (path, expected) = match self {
            Condition::Equals { path, value } => (path, value),
            Condition::DeviceIdCompare { op, value } => {
                let id = device.device_id.as_str();
                let value = value.as_str();
                return match op {
                    Comparison::Less => id < value,
                    Comparison::LessOrEqual => id <= value,
                    Comparison::Greater => id > value,
                    Comparison::GreaterOrEqual => id >= value,
                    Comparison::NotEqual => id != value,
                };
            }
            Condition::DeviceIdStartsWith { prefix } => {
                return device.device_id.starts_with(prefix.as_str())
            }
        };
        let head = path[0].as_str();
        let actual: Option<Value> = match head {
            "deviceId" => Some(Value::from(device.device_id.as_str())),
            "status" => Some(Value::from(device.status.as_str())),
            "connectionState" => Some(Value::from(device.connection_state.as_str())),
            "modelId" => Some(Value::from(device.model_id.as_str())),
            "authenticationType" => Some(Value::from(device.auth_type.as_str())),
            "capabilities" => Some(Value::Bool(device.iot_edge)),
            "tags" => {
                let mut current = device.tags.get(&path[1]);
                for step in &path[2..] {
                    current = current.and_then(|v| v.get(step));
                }
                current.cloned()
            }
            _ => None,
        };
        match actual {
            Some(actual) => values_equal(&actual, expected),
            None => expected.is_null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_forms() {
        let q = parse("SELECT * FROM devices").unwrap();
        assert_eq!(q.selection, Selection::Twins);
        let q = parse("select count() as numberOfDevices from devices where status = 'enabled'")
            .unwrap();
        assert_eq!(
            q.selection,
            Selection::Count {
                alias: "numberOfDevices".into()
            }
        );
        assert_eq!(q.conditions.len(), 1);
        let q = parse("SELECT * FROM devices WHERE tags.location = 'Oslo' AND capabilities.iotEdge = true AND tags.floor = 3").unwrap();
        assert_eq!(q.conditions.len(), 3);
        let q = parse("SELECT * FROM devices WHERE deviceId >= 'b' AND deviceId<\"c'\" AND STARTSWITH(devices.deviceId, 'b-') AND deviceId <> 'b-1'").unwrap();
        assert_eq!(q.conditions.len(), 4);
        assert_eq!(
            q.conditions[1],
            Condition::DeviceIdCompare {
                op: Comparison::Less,
                value: "c'".into()
            }
        );
        assert!(!q.only_device_id_range());
    }

    #[test]
    fn device_id_bounds_are_the_tightest_of_the_conditions() {
        let bounds = |text: &str| parse(text).unwrap().device_id_bounds();
        let s = |v: &str| v.to_string();
        assert_eq!(
            bounds("SELECT * FROM devices"),
            (Bound::Unbounded, Bound::Unbounded)
        );
        assert_eq!(
            bounds("SELECT * FROM devices WHERE deviceId >= 'b' AND deviceId > 'a' AND deviceId < 'd' AND deviceId <= 'c'"),
            (Bound::Included(s("b")), Bound::Included(s("c")))
        );
        assert_eq!(
            bounds("SELECT * FROM devices WHERE STARTSWITH(deviceId, 'ab') AND status = 'enabled'"),
            (Bound::Included(s("ab")), Bound::Excluded(s("ac")))
        );
        assert_eq!(
            bounds("SELECT * FROM devices WHERE deviceId = 'x' AND deviceId > 'x'"),
            (Bound::Excluded(s("x")), Bound::Included(s("x")))
        );
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
    }

    #[test]
    fn rejects_what_it_does_not_support() {
        for text in [
            "",
            "SELECT deviceId FROM devices",
            "SELECT * FROM devices.modules",
            "SELECT * FROM devices WHERE status != 'enabled'",
            "SELECT * FROM devices WHERE deviceId < 3",
            "SELECT * FROM devices WHERE STARTSWITH(status, 'a')",
            "SELECT * FROM devices WHERE STARTSWITH(deviceId, 3)",
            "SELECT * FROM devices WHERE deviceId ! 'a'",
            "SELECT * FROM devices WHERE status = 'a' OR status = 'b'",
            "SELECT * FROM devices WHERE properties.reported.x = 1",
            "SELECT * FROM devices WHERE status = 'unterminated",
            "SELECT * FROM devices GROUP BY status",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
