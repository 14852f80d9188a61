//! Schema tweaks for fields whose types come from `k8s-openapi`: bounds and CEL rules the
//! generated schema of a foreign type cannot carry through attributes.

use schemars::{Schema, SchemaGenerator, json_schema};

use super::rules;

/// The schema of `spec.resources`: Kubernetes' `ResourceRequirements`, with at most
/// [`rules::MAX_RESOURCES`] entries in `limits` and `requests`, each a Kubernetes quantity of at
/// most [`rules::QUANTITY_MAX_LEN`] characters ([`rules::QUANTITY_RULE`]; the apiserver names
/// the entry, e.g. `spec.resources.limits[memory]`). The bounds keep the rule's cost within
/// the apiserver's budget.
pub fn resources(generator: &mut SchemaGenerator) -> Schema {
    let mut schema =
        generator.subschema_for::<Option<k8s_openapi::api::core::v1::ResourceRequirements>>();
    for field in ["limits", "requests"] {
        let Some(map) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(field))
            .and_then(|m| m.as_object_mut())
        else {
            continue;
        };
        map.insert("maxProperties".into(), rules::MAX_RESOURCES.into());
        if let Some(value) = map
            .get_mut("additionalProperties")
            .and_then(|v| v.as_object_mut())
        {
            value.insert("maxLength".into(), rules::QUANTITY_MAX_LEN.into());
            let rule = json_schema!({
                "rule": rules::QUANTITY_RULE,
                "messageExpression": rules::RESOURCE_QUANTITY_MESSAGE,
            });
            value.insert(
                "x-kubernetes-validations".into(),
                serde_json::Value::Array(vec![rule.to_value()]),
            );
        }
    }
    schema
}
