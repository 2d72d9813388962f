//! XML-RPC values on the wire: a `<methodCall>` parsed (with quick-xml) into a method name and
//! [`Value`]s, and a `<methodResponse>` (a value or a fault) written back.
//!
//! Parsing is bounded: the body is already size-limited by the server, nesting deeper than
//! [`MAX_DEPTH`] is refused, and every malformed input is an error saying what is wrong.

use std::fmt::Write;

use quick_xml::events::Event;
use quick_xml::Reader;

/// The deepest nesting of arrays and structs accepted in a request.
pub const MAX_DEPTH: usize = 16;

/// One XML-RPC value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    Str(String),
    Double(f64),
    Array(Vec<Value>),
    Struct(Vec<(String, Value)>),
    Nil,
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }
}

/// A parsed `<methodCall>`.
#[derive(Debug, PartialEq)]
pub struct Call {
    pub method: String,
    pub params: Vec<Value>,
}

/// A flat token of the document: tags and their text, with entities resolved.
#[derive(Debug, PartialEq)]
enum Tok {
    Open(String),
    Close,
    Text(String),
}

fn tokens(body: &str) -> Result<Vec<Tok>, String> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().expand_empty_elements = true;
    let mut out = Vec::new();
    let mut depth = 0usize;
    let text = |out: &mut Vec<Tok>, s: &str| match out.last_mut() {
        Some(Tok::Text(t)) => t.push_str(s),
        _ => out.push(Tok::Text(s.to_string())),
    };
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                // methodCall/params/param/value + (array/data/value | struct/member/value) per level.
                if depth > 4 + 3 * MAX_DEPTH {
                    return Err(format!("values nested deeper than {MAX_DEPTH} levels"));
                }
                let name = std::str::from_utf8(e.local_name().as_ref())
                    .map_err(|_| "a tag name is not UTF-8".to_string())?
                    .to_string();
                out.push(Tok::Open(name));
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                out.push(Tok::Close);
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|e| format!("bad text: {e}"))?;
                text(&mut out, &s);
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| format!("bad CDATA: {e}"))?;
                text(&mut out, &s);
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => s.to_string(),
                            None => return Err(format!("unknown entity &{name};")),
                        }
                    }
                    Err(e) => return Err(format!("bad character reference: {e}")),
                };
                text(&mut out, &resolved);
            }
            Event::DocType(_) => return Err("a DOCTYPE is not allowed in XML-RPC".into()),
            Event::Eof => break,
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if depth != 0 {
        return Err("the XML ends before its elements are closed".into());
    }
    Ok(out)
}

/// A cursor over the tokens, skipping whitespace between elements.
struct Cursor {
    toks: std::vec::IntoIter<Tok>,
    peeked: Option<Tok>,
}

impl Cursor {
    fn next(&mut self) -> Option<Tok> {
        self.peeked.take().or_else(|| self.toks.next())
    }
    /// The next token that is not whitespace-only text.
    fn next_tag(&mut self) -> Option<Tok> {
        loop {
            match self.next() {
                Some(Tok::Text(t)) if t.trim().is_empty() => continue,
                t => return t,
            }
        }
    }
    fn peek_tag(&mut self) -> Option<&Tok> {
        if self.peeked.is_none() {
            self.peeked = self.next_tag();
        }
        self.peeked.as_ref()
    }
    fn open(&mut self, want: &str) -> Result<(), String> {
        match self.next_tag() {
            Some(Tok::Open(n)) if n == want => Ok(()),
            other => Err(format!("expected <{want}>, found {}", show(&other))),
        }
    }
    fn close(&mut self, of: &str) -> Result<(), String> {
        match self.next_tag() {
            Some(Tok::Close) => Ok(()),
            other => Err(format!("expected </{of}>, found {}", show(&other))),
        }
    }
    /// Text up to the closing tag (empty if there is none).
    fn text(&mut self, of: &str) -> Result<String, String> {
        match self.next() {
            Some(Tok::Text(t)) => {
                self.close(of)?;
                Ok(t)
            }
            Some(Tok::Close) => Ok(String::new()),
            other => Err(format!(
                "expected the text of <{of}>, found {}",
                show(&other)
            )),
        }
    }
}

fn show(t: &Option<Tok>) -> String {
    match t {
        Some(Tok::Open(n)) => format!("<{n}>"),
        Some(Tok::Close) => "a closing tag".into(),
        Some(Tok::Text(t)) => format!("text {:?}", t.chars().take(40).collect::<String>()),
        None => "the end".into(),
    }
}

/// Parses a `<methodCall>` body.
pub fn parse_call(body: &[u8]) -> Result<Call, String> {
    let body =
        std::str::from_utf8(body).map_err(|_| "the request body is not UTF-8".to_string())?;
    let mut c = Cursor {
        toks: tokens(body)?.into_iter(),
        peeked: None,
    };
    c.open("methodCall")?;
    c.open("methodName")?;
    let method = c.text("methodName")?.trim().to_string();
    let mut params = Vec::new();
    if matches!(c.peek_tag(), Some(Tok::Open(n)) if n == "params") {
        c.open("params")?;
        while matches!(c.peek_tag(), Some(Tok::Open(n)) if n == "param") {
            c.open("param")?;
            params.push(value(&mut c)?);
            c.close("param")?;
        }
        c.close("params")?;
    }
    c.close("methodCall")?;
    if let Some(t) = c.next_tag() {
        return Err(format!("unexpected {} after </methodCall>", show(&Some(t))));
    }
    Ok(Call { method, params })
}

/// `<value>...</value>`.
fn value(c: &mut Cursor) -> Result<Value, String> {
    c.open("value")?;
    // A value without a type is a string, whitespace included.
    let v = match c.next() {
        Some(Tok::Close) => return Ok(Value::Str(String::new())),
        Some(Tok::Text(t)) => match c.next() {
            Some(Tok::Close) => return Ok(Value::Str(t)),
            Some(Tok::Open(n)) if t.trim().is_empty() => typed(c, &n)?,
            other => return Err(format!("expected </value>, found {}", show(&other))),
        },
        Some(Tok::Open(n)) => typed(c, &n)?,
        None => return Err("the XML ends inside a <value>".into()),
    };
    c.close("value")?;
    Ok(v)
}

fn typed(c: &mut Cursor, tag: &str) -> Result<Value, String> {
    Ok(match tag {
        "i4" | "int" | "i8" => {
            let t = c.text(tag)?;
            Value::Int(
                t.trim()
                    .parse()
                    .map_err(|_| format!("<{tag}>{t}</{tag}> is not an integer"))?,
            )
        }
        "boolean" => match c.text(tag)?.trim() {
            "1" => Value::Bool(true),
            "0" => Value::Bool(false),
            t => return Err(format!("<boolean>{t}</boolean>: a boolean is 0 or 1")),
        },
        "string" => Value::Str(c.text(tag)?),
        "double" => {
            let t = c.text(tag)?;
            Value::Double(
                t.trim()
                    .parse()
                    .map_err(|_| format!("<double>{t}</double> is not a number"))?,
            )
        }
        "dateTime.iso8601" | "base64" => Value::Str(c.text(tag)?),
        "nil" => {
            c.text(tag)?;
            Value::Nil
        }
        "array" => {
            c.open("data")?;
            let mut items = Vec::new();
            while matches!(c.peek_tag(), Some(Tok::Open(n)) if n == "value") {
                items.push(value(c)?);
            }
            c.close("data")?;
            c.close("array")?;
            Value::Array(items)
        }
        "struct" => {
            let mut members = Vec::new();
            while matches!(c.peek_tag(), Some(Tok::Open(n)) if n == "member") {
                c.open("member")?;
                c.open("name")?;
                let name = c.text("name")?;
                let v = value(c)?;
                c.close("member")?;
                members.push((name, v));
            }
            c.close("struct")?;
            Value::Struct(members)
        }
        other => return Err(format!("<{other}> is not an XML-RPC type")),
    })
}

fn escape(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            // Characters XML 1.0 cannot carry (control bytes from a program's output).
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, v: &Value) {
    out.push_str("<value>");
    match v {
        // Python's xmlrpc.client refuses <i8>; supervisord caps ints to 32 bits too.
        Value::Int(n) => {
            let n = (*n).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
            let _ = write!(out, "<int>{n}</int>");
        }
        Value::Bool(b) => {
            let _ = write!(out, "<boolean>{}</boolean>", u8::from(*b));
        }
        Value::Str(s) => {
            out.push_str("<string>");
            escape(out, s);
            out.push_str("</string>");
        }
        Value::Double(d) => {
            let _ = write!(out, "<double>{d}</double>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for i in items {
                write_value(out, i);
            }
            out.push_str("</data></array>");
        }
        Value::Struct(members) => {
            out.push_str("<struct>");
            for (k, v) in members {
                out.push_str("<member><name>");
                escape(out, k);
                out.push_str("</name>");
                write_value(out, v);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Nil => out.push_str("<nil/>"),
    }
    out.push_str("</value>");
}

/// A `<methodResponse>` carrying `v`.
pub fn response(v: &Value) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n");
    write_value(&mut out, v);
    out.push_str("\n</param>\n</params>\n</methodResponse>\n");
    out
}

/// A `<methodResponse>` carrying a fault.
pub fn fault(code: i64, text: &str) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<fault>\n");
    write_value(
        &mut out,
        &Value::Struct(vec![
            ("faultCode".into(), Value::Int(code)),
            ("faultString".into(), Value::str(text)),
        ]),
    );
    out.push_str("\n</fault>\n</methodResponse>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_python_sends() {
        let body = b"<?xml version='1.0'?>\n<methodCall>\n<methodName>supervisor.startProcess</methodName>\n<params>\n<param>\n<value><string>web:a &amp; b</string></value>\n</param>\n<param>\n<value><boolean>1</boolean></value>\n</param>\n</params>\n</methodCall>\n";
        let c = parse_call(body).unwrap();
        assert_eq!(c.method, "supervisor.startProcess");
        assert_eq!(c.params, vec![Value::str("web:a & b"), Value::Bool(true)]);
    }

    #[test]
    fn parses_untyped_nested_and_empty_values() {
        let body = b"<methodCall><methodName>system.multicall</methodName><params><param><value><array><data><value><struct><member><name>methodName</name><value>x</value></member><member><name>params</name><value><array><data><value><i4>-3</i4></value><value/></data></array></value></member></struct></value></data></array></value></param></params></methodCall>";
        let c = parse_call(body).unwrap();
        assert_eq!(
            c.params,
            vec![Value::Array(vec![Value::Struct(vec![
                ("methodName".into(), Value::str("x")),
                (
                    "params".into(),
                    Value::Array(vec![Value::Int(-3), Value::str("")])
                ),
            ])])]
        );
        let no_params = parse_call(b"<methodCall><methodName>a</methodName></methodCall>").unwrap();
        assert!(no_params.params.is_empty());
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        for (body, why) in [
            (&b"<methodCall><methodName>a</methodName>"[..], "ends"),
            (b"<methodCall><methodName>a</methodName><params><param><value><int>x</int></value></param></params></methodCall>", "not an integer"),
            (b"<methodCall><methodName>a</methodName><params><param><value><blob/></value></param></params></methodCall>", "not an XML-RPC type"),
            (b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodCall/>", "DOCTYPE"),
            (b"<methodCall><methodName>&bogus;</methodName></methodCall>", "unknown entity"),
            (b"<nope/>", "expected <methodCall>"),
            (b"\xff\xfe", "UTF-8"),
        ] {
            let e = parse_call(body).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let deep = format!(
            "<methodCall><methodName>a</methodName><params><param>{}{}</param></params></methodCall>",
            "<value><array><data>".repeat(40),
            "</data></array></value>".repeat(40)
        );
        assert!(parse_call(deep.as_bytes()).unwrap_err().contains("nested"));
    }

    #[test]
    fn writes_responses_and_faults() {
        let r = response(&Value::Struct(vec![
            ("a<".into(), Value::Int(1 << 40)),
            ("b".into(), Value::Bool(true)),
        ]));
        assert!(
            r.contains("<name>a&lt;</name><value><int>2147483647</int></value>"),
            "{r}"
        );
        assert!(r.contains("<boolean>1</boolean>"));
        let f = fault(10, "BAD_NAME: x\u{1}");
        assert!(
            f.contains("<int>10</int>") && f.contains("BAD_NAME: x\u{fffd}"),
            "{f}"
        );
        // Round trip through our own parser's value grammar.
        let call = format!(
            "<methodCall><methodName>m</methodName><params><param>{}</param></params></methodCall>",
            &r[r.find("<value>").unwrap()..r.rfind("</value>").unwrap() + 8]
        );
        assert!(parse_call(call.as_bytes()).is_ok());
    }
}
