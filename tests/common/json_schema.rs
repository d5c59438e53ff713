//! pgcairn's `--json` outputs against their schemas in docs/json/ (docs/json.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json")
}

/// The output schemas: docs/json/*.schema.json, by file name.
pub fn schema_names() -> BTreeSet<String> {
    std::fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".schema.json"))
        .collect()
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Hands the validator the files a schema refers to (`defs.json`), from docs/json/ only: the
/// tests never reach the network.
struct DocsRetriever;

impl jsonschema::Retrieve for DocsRetriever {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let path = PathBuf::from(uri.path().as_str());
        if uri.scheme().as_str() != "file" || path.parent() != Some(schema_dir().as_path()) {
            return Err(format!("{uri} is not a file in docs/json").into());
        }
        Ok(read_json(&path))
    }
}

/// The validator of docs/json/`schema`, its references resolved against its own location.
pub fn validator(schema: &str) -> jsonschema::Validator {
    let path = schema_dir().join(schema);
    jsonschema::draft202012::options()
        .with_base_uri(format!("file://{}", path.display()))
        .with_retriever(DocsRetriever)
        .build(&read_json(&path))
        .unwrap_or_else(|e| panic!("{schema} does not build: {e}"))
}

/// What is wrong with `value` by docs/json/`schema`, one problem per entry (empty: it conforms).
pub fn problems(schema: &str, value: &Value) -> Vec<String> {
    validator(schema)
        .iter_errors(value)
        .map(|e| match e.instance_path().to_string() {
            top if top.is_empty() => format!("{e} (at the top)"),
            path => format!("{e} at {path}"),
        })
        .collect()
}

/// Asserts that `value`, the output of `what`, conforms to docs/json/`schema`.
pub fn assert_conforms(schema: &str, what: &str, value: &Value) {
    let found = problems(schema, value);
    assert!(
        found.is_empty(),
        "{what}: output does not match docs/json/{schema} (a key added or changed must be added \
         to the schema and docs/json.md too):\n  {}\noutput: {value:#}",
        found.join("\n  ")
    );
}
