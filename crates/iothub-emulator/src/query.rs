//! The subset of the IoT Hub query language the emulator understands
//! (<https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-query-language>):
//! `SELECT * FROM devices [WHERE a = v AND ...]` and
//! `SELECT COUNT() AS name FROM devices [WHERE ...]`. Hand-written because the dialect is tiny
//! and no maintained crate parses it.

use serde_json::Value;

use crate::model::DeviceRecord;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Selection {
    Twins,
    Count { alias: String },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub(crate) path: Vec<String>,
    pub(crate) value: Value,
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
    let field = field
        .strip_prefix("devices.")
        .map(str::to_string)
        .unwrap_or(field);
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
    cursor.symbol('=')?;
    let value = match cursor.next() {
        Some(Token::Text(text)) => Value::from(text),
        Some(Token::Number(n)) => serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| "invalid number".to_string())?,
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
        _ => return Err("expected a literal after '='".into()),
    };
    Ok(Condition { path, value })
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
}

impl Condition {
    fn matches(&self, device: &DeviceRecord) -> bool {
        let head = self.path[0].as_str();
        let actual: Option<Value> = match head {
            "deviceId" => Some(Value::from(device.device_id.as_str())),
            "status" => Some(Value::from(device.status.as_str())),
            "connectionState" => Some(Value::from(device.connection_state.as_str())),
            "modelId" => Some(Value::from(device.model_id.as_str())),
            "authenticationType" => Some(Value::from(device.auth_type.as_str())),
            "capabilities" => Some(Value::Bool(device.iot_edge)),
            "tags" => {
                let mut current = device.tags.get(&self.path[1]);
                for step in &self.path[2..] {
                    current = current.and_then(|v| v.get(step));
                }
                current.cloned()
            }
            _ => None,
        };
        match actual {
            Some(actual) => values_equal(&actual, &self.value),
            None => self.value.is_null(),
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
    }

    #[test]
    fn rejects_what_it_does_not_support() {
        for text in [
            "",
            "SELECT deviceId FROM devices",
            "SELECT * FROM devices.modules",
            "SELECT * FROM devices WHERE status != 'enabled'",
            "SELECT * FROM devices WHERE status = 'a' OR status = 'b'",
            "SELECT * FROM devices WHERE properties.reported.x = 1",
            "SELECT * FROM devices WHERE status = 'unterminated",
            "SELECT * FROM devices GROUP BY status",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
