//! Checks a plugin node's `input` against the JSON Schema its action publishes, as far as can be
//! known before the templates run: required fields, unknown fields when the schema forbids
//! them, and the type and allowed values of literal (untemplated) values.

use serde_json::Value;

use crate::suggest::did_you_mean;

/// What is wrong with `input` for `schema`, one message per problem, with the field's path.
pub fn check(schema: &Value, input: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(schema, input, "input", &mut problems);
    problems
}

fn is_template(value: &Value) -> bool {
    matches!(value, Value::String(s) if s.contains("{{") || s.contains("{%"))
}

fn type_names(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn walk(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    if is_template(value) {
        return;
    }
    let types = type_names(schema);
    if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
        problems.push(format!(
            "`{path}` is {}, but the action takes {}",
            kind_of(value),
            types.join(" or ")
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        problems.push(format!(
            "`{path}` is {value}, but the action takes one of {}",
            names.join(", ")
        ));
        return;
    }
    let Value::Object(fields) = value else {
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                walk(item_schema, item, &format!("{path}[{i}]"), problems);
            }
        }
        return;
    };
    let properties = schema["properties"].as_object();
    for required in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = required.as_str()
            && !fields.contains_key(name)
        {
            let mut message = format!("`{path}` lacks `{name}`, which the action requires");
            // A field the action does not know may be this one, misspelt.
            if let Some(misspelt) = fields.keys().find(|k| {
                properties.is_none_or(|p| !p.contains_key(k.as_str()))
                    && did_you_mean(k, std::iter::once(name)).is_some()
            }) {
                message.push_str(&format!(
                    "; `{misspelt}` is not a field it takes: did you mean `{name}`?"
                ));
            }
            problems.push(message);
        }
    }
    for (name, field) in fields {
        let field_path = format!("{path}.{name}");
        match properties.and_then(|p| p.get(name)) {
            Some(field_schema) => walk(field_schema, field, &field_path, problems),
            None if schema["additionalProperties"] == Value::Bool(false) => {
                let known = properties
                    .into_iter()
                    .flat_map(|p| p.keys().map(String::as_str));
                let mut message = format!("`{field_path}` is not a field the action takes");
                if let Some(best) = did_you_mean(name, known) {
                    message.push_str(&format!("; did you mean `{best}`?"));
                }
                problems.push(message);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literal_inputs_are_checked_and_templates_trusted() {
        let schema = json!({
            "type": "object",
            "required": ["sheet", "column"],
            "additionalProperties": false,
            "properties": {
                "sheet": {"type": "string"},
                "column": {"type": "string"},
                "match": {"type": "string", "enum": ["exact", "case_insensitive"]},
                "limit": {"type": ["integer", "null"]},
            }
        });
        assert!(check(&schema, &json!({"sheet": "s", "column": "{{ col }}"})).is_empty());
        let problems = check(
            &schema,
            &json!({"sheet": 3, "colum": "a", "match": "fuzzy", "limit": "{{ n }}"}),
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("did you mean `column`")));
        assert!(problems.iter().any(|p| p.contains("lacks `column`")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`input.sheet` is a number"))
        );
        assert!(problems.iter().any(|p| p.contains("one of")));
    }
}
