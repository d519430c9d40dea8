//! The subset of Helm's Go templates our chart is written in, so the plain manifests can
//! be rendered from the chart without Helm: `{{ .Values.a.b }}`, `{{ .Release.Namespace }}`,
//! `{{ toJson X }}`, `{{ quote X }}`, `{{ $var }}`, `{{ range $v := X }}`, `{{ if X }}`,
//! `{{ end }}`, comments, and the `{{-`/`-}}` whitespace trimming. Anything else is an
//! error, which keeps the chart inside what this renderer and Helm agree on.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("unclosed action at byte {0}")]
    Unclosed(usize),
    #[error(
        "unsupported action {{{{ {0} }}}}: the chart uses only the subset in xtask/src/template.rs"
    )]
    Unsupported(String),
    #[error("{0} has no value")]
    Missing(String),
    #[error("{0} is not a list")]
    NotAList(String),
    #[error("{{{{ end }}}} without a block")]
    StrayEnd,
    #[error("a block is not closed with {{{{ end }}}}")]
    UnclosedBlock,
}

/// What templates see: the values and the release.
pub struct Context<'a> {
    pub values: &'a Value,
    pub release_namespace: &'a str,
}

enum Token<'s> {
    Text(String),
    Action(&'s str),
}

enum Node<'s> {
    Text(String),
    Print(&'s str),
    Range {
        var: &'s str,
        list: &'s str,
        body: Vec<Node<'s>>,
    },
    If {
        cond: &'s str,
        body: Vec<Node<'s>>,
    },
}

pub fn render(src: &str, ctx: &Context<'_>) -> Result<String, Error> {
    let tokens = lex(src)?;
    let mut iter = tokens.into_iter();
    let nodes = parse(&mut iter, false)?;
    let mut out = String::new();
    let mut vars = Vec::new();
    eval(&nodes, ctx, &mut vars, &mut out)?;
    Ok(out)
}

/// Splits text from actions, applying the trim markers to the neighbouring text.
fn lex(src: &str) -> Result<Vec<Token<'_>>, Error> {
    let mut tokens = Vec::new();
    let mut rest = src;
    let mut offset = 0;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_owned();
        if trim_next {
            text = text.trim_start().to_owned();
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or(Error::Unclosed(offset + open))?;
        let mut body = &after[..close];
        if let Some(b) = body
            .strip_prefix('-')
            .filter(|b| b.starts_with([' ', '\t', '\n']))
        {
            text = text.trim_end().to_owned();
            body = b;
        }
        trim_next = false;
        if let Some(b) = body
            .strip_suffix('-')
            .filter(|b| b.ends_with([' ', '\t', '\n']))
        {
            trim_next = true;
            body = b;
        }
        tokens.push(Token::Text(text));
        tokens.push(Token::Action(body.trim()));
        offset += open + 2 + close + 2;
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    tokens.push(Token::Text(text.to_owned()));
    Ok(tokens)
}

fn parse<'s>(
    tokens: &mut impl Iterator<Item = Token<'s>>,
    in_block: bool,
) -> Result<Vec<Node<'s>>, Error> {
    let mut nodes = Vec::new();
    while let Some(token) = tokens.next() {
        match token {
            Token::Text(t) => nodes.push(Node::Text(t)),
            Token::Action(a) if a.starts_with("/*") && a.ends_with("*/") => {}
            Token::Action("end") => {
                return if in_block {
                    Ok(nodes)
                } else {
                    Err(Error::StrayEnd)
                };
            }
            Token::Action(a) => {
                if let Some(spec) = a.strip_prefix("range ") {
                    let (var, list) = spec
                        .split_once(":=")
                        .map(|(v, l)| (v.trim(), l.trim()))
                        .filter(|(v, _)| v.starts_with('$'))
                        .ok_or_else(|| Error::Unsupported(a.to_owned()))?;
                    let body = parse(tokens, true)?;
                    nodes.push(Node::Range { var, list, body });
                } else if let Some(cond) = a.strip_prefix("if ") {
                    let body = parse(tokens, true)?;
                    nodes.push(Node::If {
                        cond: cond.trim(),
                        body,
                    });
                } else {
                    nodes.push(Node::Print(a));
                }
            }
        }
    }
    if in_block {
        Err(Error::UnclosedBlock)
    } else {
        Ok(nodes)
    }
}

fn eval<'s>(
    nodes: &[Node<'s>],
    ctx: &Context<'_>,
    vars: &mut Vec<(&'s str, Value)>,
    out: &mut String,
) -> Result<(), Error> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Print(expr) => out.push_str(&print(expr, ctx, vars)?),
            Node::If { cond, body } => {
                if truthy(&lookup(cond, ctx, vars)?) {
                    eval(body, ctx, vars, out)?;
                }
            }
            Node::Range { var, list, body } => {
                let items = match lookup(list, ctx, vars)? {
                    Value::Array(items) => items,
                    Value::Null => Vec::new(),
                    _ => return Err(Error::NotAList((*list).to_owned())),
                };
                for item in items {
                    vars.push((var, item));
                    let done = eval(body, ctx, vars, out);
                    vars.pop();
                    done?;
                }
            }
        }
    }
    Ok(())
}

fn print(expr: &str, ctx: &Context<'_>, vars: &[(&str, Value)]) -> Result<String, Error> {
    let mut words = expr.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("toJson"), Some(arg), None) => Ok(lookup(arg, ctx, vars)?.to_string()),
        (Some("quote"), Some(arg), None) => {
            Ok(Value::String(scalar(arg, &lookup(arg, ctx, vars)?)?).to_string())
        }
        (Some(arg), None, None) => scalar(arg, &lookup(arg, ctx, vars)?),
        _ => Err(Error::Unsupported(expr.to_owned())),
    }
}

/// A value printed the way Go's template engine prints it.
fn scalar(expr: &str, v: &Value) -> Result<String, Error> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Err(Error::Missing(expr.to_owned())),
        Value::Array(_) | Value::Object(_) => Err(Error::Unsupported(format!(
            "{expr} (a list or map: print it with toJson)"
        ))),
    }
}

fn lookup(expr: &str, ctx: &Context<'_>, vars: &[(&str, Value)]) -> Result<Value, Error> {
    // Inside `range`, `.` is the item, as in Go: the root is reachable only as `$`.
    let in_range = !vars.is_empty();
    let expr = match expr.strip_prefix('$') {
        Some(rooted) if rooted.starts_with('.') => rooted,
        _ if in_range && expr.starts_with('.') => {
            return Err(Error::Unsupported(format!(
                "{expr} inside range, where . is the item: write ${expr}"
            )));
        }
        _ => expr,
    };
    if expr == ".Release.Namespace" {
        return Ok(Value::String(ctx.release_namespace.to_owned()));
    }
    if expr.starts_with('$') {
        return vars
            .iter()
            .rev()
            .find(|(name, _)| *name == expr)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::Missing(expr.to_owned()));
    }
    let path = expr
        .strip_prefix(".Values.")
        .ok_or_else(|| Error::Unsupported(expr.to_owned()))?;
    let mut v = ctx.values;
    for key in path.split('.') {
        v = v.get(key).ok_or_else(|| Error::Missing(expr.to_owned()))?;
    }
    Ok(v.clone())
}

/// Go's truth: empty and zero values are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, values: Value) -> Result<String, Error> {
        render(
            src,
            &Context {
                values: &values,
                release_namespace: "octopus-system",
            },
        )
    }

    #[test]
    fn values_and_release_print_like_go() {
        let out = run(
            "ns: {{ .Release.Namespace }}\nreplicas: {{ .Values.brain.replicas }}\nimage: {{ quote .Values.brain.image }}\nserial: {{ toJson .Values.serial }}\n",
            json!({"brain": {"replicas": 2, "image": "octopus/brain:0.1.0"}, "serial": ["/dev/ttyUSB*"]}),
        )
        .unwrap();
        assert_eq!(
            out,
            "ns: octopus-system\nreplicas: 2\nimage: \"octopus/brain:0.1.0\"\nserial: [\"/dev/ttyUSB*\"]\n"
        );
    }

    #[test]
    fn trim_markers_eat_whitespace_and_newlines_on_their_side_only() {
        // The same template in Go: "a:\n{{- range $n := .L }}\n- {{ $n }}\n{{- end }}\nb"
        // renders "a:\n- x\n- y\nb".
        let out = run(
            "a:\n{{- range $n := .Values.l }}\n- {{ $n }}\n{{- end }}\nb",
            json!({"l": ["x", "y"]}),
        )
        .unwrap();
        assert_eq!(out, "a:\n- x\n- y\nb");
        // Inside range the root is `$`, as in Helm.
        let t = "{{ range $n := .Values.l }}{{ $n }}@{{ $.Release.Namespace }} {{ end }}";
        assert_eq!(run(t, json!({"l": ["x"]})).unwrap(), "x@octopus-system ");
        let t = "{{ range $n := .Values.l }}{{ .Release.Namespace }}{{ end }}";
        assert!(matches!(
            run(t, json!({"l": ["x"]})),
            Err(Error::Unsupported(_))
        ));
        assert_eq!(run("x {{- /* gone */ -}} y", json!({})).unwrap(), "xy");
        // A minus without a space is part of the expression, not a trim marker.
        assert!(matches!(
            run("{{-1}}", json!({})),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn if_follows_go_truth() {
        let t = "{{ if .Values.on }}yes{{ end }}|{{ if .Values.list }}list{{ end }}";
        assert_eq!(run(t, json!({"on": true, "list": []})).unwrap(), "yes|");
        assert_eq!(run(t, json!({"on": false, "list": [1]})).unwrap(), "|list");
    }

    #[test]
    fn what_is_outside_the_subset_is_an_error() {
        for (src, values) in [
            ("{{ .Values.missing }}", json!({})),
            ("{{ include \"x\" . }}", json!({})),
            ("{{ .Values.m }}", json!({"m": {"a": 1}})),
            ("{{ range $x := .Values.s }}{{ end }}", json!({"s": "str"})),
            ("{{ end }}", json!({})),
            ("{{ if .Values.a }}", json!({"a": true})),
            ("{{ .Values.a", json!({"a": 1})),
        ] {
            assert!(run(src, values).is_err(), "{src} should fail");
        }
    }
}
