//! The management API's OpenAPI document (`functions/api/openapi.json`), and a validator of
//! the JSON Schema subset it uses: `$ref` (to `#/components/…`), `type` (one or several),
//! `properties`, `required`, `additionalProperties: false`, `items`, `const`, `enum`, `pattern`,
//! `minLength`, `maxLength`, `minimum`, `maximum`, `format: date-time`, and the annotations
//! `description`, `default` and `examples`. Loading the document walks every schema in it and
//! refuses any other keyword or a `$ref` that does not resolve, so the document cannot grow a
//! construct that the checks would silently skip.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// The document, loaded and linted once.
#[derive(Debug)]
pub struct OpenApi {
    pub doc: Value,
    patterns: Mutex<HashMap<String, regex::Regex>>,
}

/// The document in the repository, parsed and linted.
pub fn openapi() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/api/openapi.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let doc = serde_json::from_str(&text).expect("openapi.json is JSON");
        let api = OpenApi {
            doc,
            patterns: Mutex::new(HashMap::new()),
        };
        api.lint();
        api
    })
}

const ANNOTATIONS: [&str; 3] = ["description", "default", "examples"];

impl OpenApi {
    /// What a `#/…` reference points at.
    pub fn pointer(&self, reference: &Value) -> &Value {
        let reference = reference.as_str().expect("$ref is a string");
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("$ref {reference} is not local"));
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("$ref {reference} does not resolve"))
    }

    /// A response object, its `$ref` followed.
    pub fn response<'a>(&'a self, response: &'a Value) -> &'a Value {
        match response.get("$ref") {
            Some(reference) => self.pointer(reference),
            None => response,
        }
    }

    /// `components.responses.<name>`.
    pub fn component_response(&self, name: &str) -> &Value {
        &self.doc["components"]["responses"][name]
    }

    /// The request body schema of `POST <path>`.
    pub fn request_schema(&self, path: &str) -> Option<&Value> {
        self.doc["paths"]
            .get(path)?
            .pointer("/post/requestBody/content/application~1json/schema")
    }

    /// Checks `value` against `schema`; the errors say where and why.
    pub fn validate(&self, schema: &Value, value: &Value) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        self.check(schema, value, "$", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = schema.as_object().expect("a schema is an object");
        for (keyword, expected) in schema {
            let fail = |errors: &mut Vec<String>, why: String| errors.push(format!("{at}: {why}"));
            match keyword.as_str() {
                "$ref" => self.check(self.pointer(expected), value, at, errors),
                "type" => {
                    let types: Vec<&str> = match expected {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                        _ => panic!("type {expected} is neither a string nor an array"),
                    };
                    if !types.iter().any(|t| is_type(value, t)) {
                        fail(errors, format!("{value} is not of type {types:?}"));
                    }
                }
                "properties" => {
                    let (Some(object), Some(properties)) =
                        (value.as_object(), expected.as_object())
                    else {
                        continue;
                    };
                    for (name, property) in properties {
                        if let Some(v) = object.get(name) {
                            self.check(property, v, &format!("{at}.{name}"), errors);
                        }
                    }
                }
                "required" => {
                    let Some(object) = value.as_object() else {
                        continue;
                    };
                    for name in expected.as_array().expect("required is an array") {
                        let name = name.as_str().expect("required names are strings");
                        if !object.contains_key(name) {
                            fail(errors, format!("missing required property {name:?}"));
                        }
                    }
                }
                "additionalProperties" => {
                    assert_eq!(expected, &Value::Bool(false), "only `false` is supported");
                    let Some(object) = value.as_object() else {
                        continue;
                    };
                    let known = schema.get("properties").and_then(Value::as_object);
                    for name in object.keys() {
                        if !known.is_some_and(|k| k.contains_key(name)) {
                            fail(errors, format!("property {name:?} is not in the schema"));
                        }
                    }
                }
                "items" => {
                    for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                        self.check(expected, item, &format!("{at}[{i}]"), errors);
                    }
                }
                "enum" => {
                    let allowed = expected.as_array().expect("enum is an array");
                    if !allowed.contains(value) {
                        fail(errors, format!("{value} is not one of {expected}"));
                    }
                }
                "const" if value != expected => fail(errors, format!("{value} is not {expected}")),
                "const" => {}
                "pattern" => {
                    let Some(text) = value.as_str() else { continue };
                    let pattern = expected.as_str().expect("pattern is a string");
                    if !self.matches(pattern, text) {
                        fail(errors, format!("{text:?} does not match {pattern}"));
                    }
                }
                "minLength" | "maxLength" => {
                    let Some(text) = value.as_str() else { continue };
                    let bound = expected.as_u64().expect("length bounds are integers");
                    let len = text.chars().count() as u64;
                    if (keyword == "minLength" && len < bound)
                        || (keyword == "maxLength" && len > bound)
                    {
                        fail(errors, format!("length {len} breaks {keyword} {bound}"));
                    }
                }
                "minimum" | "maximum" => {
                    let Some(n) = value.as_f64() else { continue };
                    let bound = expected.as_f64().expect("numeric bounds are numbers");
                    if (keyword == "minimum" && n < bound) || (keyword == "maximum" && n > bound) {
                        fail(errors, format!("{n} breaks {keyword} {bound}"));
                    }
                }
                "format" => {
                    assert_eq!(expected, "date-time", "only date-time is supported");
                    let Some(text) = value.as_str() else { continue };
                    if !is_rfc3339(text) {
                        fail(errors, format!("{text:?} is not an RFC 3339 date-time"));
                    }
                }
                k if ANNOTATIONS.contains(&k) => {}
                other => panic!("schema keyword {other:?} is outside the subset validated here"),
            }
        }
    }

    fn matches(&self, pattern: &str, text: &str) -> bool {
        let mut cache = self.patterns.lock().expect("pattern cache");
        cache
            .entry(pattern.to_owned())
            .or_insert_with(|| {
                regex::Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern}: {e}"))
            })
            .is_match(text)
    }

    /// Walks every schema of the document: keywords in the subset, references resolving.
    fn lint(&self) {
        let mut schemas: Vec<&Value> = self.doc["components"]["schemas"]
            .as_object()
            .expect("components.schemas")
            .values()
            .collect();
        let responses = self.doc["components"]["responses"]
            .as_object()
            .expect("components.responses");
        let mut all_responses: Vec<&Value> = responses.values().collect();
        for item in self.doc["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("path item").values() {
                if let Some(schema) =
                    operation.pointer("/requestBody/content/application~1json/schema")
                {
                    schemas.push(schema);
                }
                let listed = operation["responses"].as_object().expect("responses");
                all_responses.extend(listed.values().map(|r| self.response(r)));
            }
        }
        for response in all_responses {
            assert!(
                response["description"].is_string(),
                "response without description"
            );
            for content in response
                .get("content")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                schemas.push(&content.1["schema"]);
            }
            for header in response
                .get("headers")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                schemas.push(&header.1["schema"]);
            }
        }
        for schema in schemas {
            self.lint_schema(schema);
        }
    }

    fn lint_schema(&self, schema: &Value) {
        // Validating against every kind of value exercises every keyword of the schema.
        for sample in [
            Value::Null,
            serde_json::json!(1),
            serde_json::json!("x"),
            serde_json::json!([1]),
            serde_json::json!({}),
        ] {
            let _ = self.validate(schema, &sample);
        }
        let object = schema.as_object().expect("schema is an object");
        for nested in object
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.lint_schema(nested.1);
        }
        if let Some(items) = object.get("items") {
            self.lint_schema(items);
        }
        if let Some(reference) = object.get("$ref") {
            self.lint_schema(self.pointer(reference));
        }
    }
}

fn is_type(value: &Value, t: &str) -> bool {
    match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other:?}"),
    }
}

/// RFC 3339's `date-time`: a full date, `T`, a time with optional fraction, and an offset.
pub fn is_rfc3339(text: &str) -> bool {
    static SHAPE: OnceLock<regex::Regex> = OnceLock::new();
    let shape = SHAPE.get_or_init(|| {
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
            .expect("RFC 3339 shape")
    });
    shape.is_match(text) && text.parse::<jiff::Timestamp>().is_ok()
}
