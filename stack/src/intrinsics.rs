//! The few CloudFormation intrinsic functions the template uses where the local cloud reads it
//! (the API's request model), resolved as CloudFormation resolves them at deploy time for given
//! parameter values: `Ref` (parameters, `AWS::Partition`, `AWS::Region`), `Fn::Sub`,
//! `Fn::FindInMap`, `Fn::Split`, `Fn::Join`, `Fn::If` and the condition functions. Anything else
//! is an error that names it, never a guess. Reference:
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference.html>

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What CloudFormation knows when it resolves the template: the stack's parameter values (a
/// parameter left out takes its template `Default`) and the pseudo parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackValues {
    pub partition: String,
    pub region: String,
    pub parameters: BTreeMap<String, String>,
}

impl StackValues {
    /// A stack in `region`, in that region's partition, with every parameter at its default.
    pub fn new(partition: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            partition: partition.into(),
            region: region.into(),
            parameters: BTreeMap::new(),
        }
    }

    /// Sets parameter `name` to `value`.
    pub fn parameter(mut self, name: &str, value: impl Into<String>) -> Self {
        self.parameters.insert(name.to_string(), value.into());
        self
    }
}

/// `template` (CloudFormation JSON, long-form intrinsics) with `stack`, resolving `value`.
pub struct Resolver<'a> {
    template: &'a Value,
    stack: &'a StackValues,
}

impl<'a> Resolver<'a> {
    pub fn new(template: &'a Value, stack: &'a StackValues) -> Self {
        Self { template, stack }
    }

    /// `value` with every intrinsic function in it replaced by its result.
    pub fn resolve(&self, value: &Value) -> Result<Value> {
        match value {
            Value::Array(items) => items.iter().map(|item| self.resolve(item)).collect(),
            Value::Object(map) if map.len() == 1 => {
                let (name, argument) = map.iter().next().expect("one entry");
                if name == "Ref" || name.starts_with("Fn::") || name == "Condition" {
                    self.function(name, argument)
                        .with_context(|| format!("resolving {name}"))
                } else {
                    Ok(Value::Object(self.resolve_map(map)?))
                }
            }
            Value::Object(map) => Ok(Value::Object(self.resolve_map(map)?)),
            other => Ok(other.clone()),
        }
    }

    fn resolve_map(&self, map: &Map<String, Value>) -> Result<Map<String, Value>> {
        map.iter()
            .map(|(key, value)| Ok((key.clone(), self.resolve(value)?)))
            .collect()
    }

    fn function(&self, name: &str, argument: &Value) -> Result<Value> {
        match name {
            "Ref" => Ok(Value::String(self.reference(text(argument)?)?)),
            "Fn::Sub" => self.sub(argument).map(Value::String),
            "Fn::FindInMap" => {
                let [map, first, second] = self.strings::<3>(argument)?;
                let found = &self.template["Mappings"][&map][&first][&second];
                if found.is_null() {
                    bail!("Mappings has no {map}.{first}.{second}");
                }
                self.resolve(found)
            }
            "Fn::Split" => {
                let [separator, source] = arguments::<2>(argument)?;
                let source = self.resolve(source)?;
                Ok(text(&source)?
                    .split(text(separator)?)
                    .map(|part| Value::String(part.to_string()))
                    .collect())
            }
            "Fn::Join" => {
                let [separator, items] = arguments::<2>(argument)?;
                let items = self.resolve(items)?;
                let parts = items
                    .as_array()
                    .context("Fn::Join takes a list")?
                    .iter()
                    .map(text)
                    .collect::<Result<Vec<_>>>()?;
                Ok(Value::String(parts.join(text(separator)?)))
            }
            "Fn::If" => {
                let [condition, then, otherwise] = arguments::<3>(argument)?;
                if self.condition(text(condition)?)? {
                    self.resolve(then)
                } else {
                    self.resolve(otherwise)
                }
            }
            "Condition" => Ok(Value::Bool(self.condition(text(argument)?)?)),
            "Fn::Equals" => {
                let [left, right] = arguments::<2>(argument)?;
                Ok(Value::Bool(self.resolve(left)? == self.resolve(right)?))
            }
            "Fn::Not" => {
                let [operand] = arguments::<1>(argument)?;
                Ok(Value::Bool(!truth(&self.resolve(operand)?)?))
            }
            "Fn::And" | "Fn::Or" => {
                let operands = argument.as_array().context("a list of conditions")?;
                let values = operands
                    .iter()
                    .map(|operand| truth(&self.resolve(operand)?))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Value::Bool(if name == "Fn::And" {
                    values.iter().all(|v| *v)
                } else {
                    values.iter().any(|v| *v)
                }))
            }
            other => bail!("{other} is not resolved here"),
        }
    }

    fn condition(&self, name: &str) -> Result<bool> {
        let condition = &self.template["Conditions"][name];
        if condition.is_null() {
            bail!("the template has no condition {name}");
        }
        truth(&self.resolve(condition)?)
    }

    fn reference(&self, name: &str) -> Result<String> {
        match name {
            "AWS::Partition" => return Ok(self.stack.partition.clone()),
            "AWS::Region" => return Ok(self.stack.region.clone()),
            _ => {}
        }
        if let Some(value) = self.stack.parameters.get(name) {
            return Ok(value.clone());
        }
        let parameter = &self.template["Parameters"][name];
        if parameter.is_null() {
            bail!("{name} is not a parameter of the template (or a pseudo parameter known here)");
        }
        match &parameter["Default"] {
            Value::String(default) => Ok(default.clone()),
            Value::Number(default) => Ok(default.to_string()),
            _ => bail!("parameter {name} has no value and no default"),
        }
    }

    /// `Fn::Sub` in both forms: a string, or `[string, {name: value}]`.
    fn sub(&self, argument: &Value) -> Result<String> {
        let (source, variables) = match argument {
            Value::String(source) => (source.as_str(), Map::new()),
            Value::Array(parts) if parts.len() == 2 => (
                text(&parts[0])?,
                self.resolve(&parts[1])?
                    .as_object()
                    .cloned()
                    .context("Fn::Sub's variables are a map")?,
            ),
            _ => bail!("Fn::Sub takes a string or [string, map]"),
        };
        let mut out = String::new();
        let mut rest = source;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').context("an unclosed ${ in Fn::Sub")?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(text(value)?);
            } else if name.contains('.') {
                bail!("${{{name}}} (Fn::GetAtt) is not resolved here");
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn strings<const N: usize>(&self, argument: &Value) -> Result<[String; N]> {
        let parts = arguments::<N>(argument)?;
        let mut out: [String; N] = std::array::from_fn(|_| String::new());
        for (slot, part) in out.iter_mut().zip(parts) {
            *slot = text(&self.resolve(part)?)?.to_string();
        }
        Ok(out)
    }
}

fn arguments<const N: usize>(argument: &Value) -> Result<[&Value; N]> {
    let list = argument
        .as_array()
        .with_context(|| format!("takes a list of {N}"))?;
    let items: Vec<&Value> = list.iter().collect();
    items
        .try_into()
        .map_err(|_| anyhow::anyhow!("takes a list of {N}, not {}", list.len()))
}

fn text(value: &Value) -> Result<&str> {
    value
        .as_str()
        .with_context(|| format!("{value} is not a string"))
}

fn truth(value: &Value) -> Result<bool> {
    value
        .as_bool()
        .with_context(|| format!("{value} is not a condition's result"))
}

/// The YAML template with its short forms (`!Ref X`, `!Sub s`, `!GetAtt A.B`) written long,
/// as CloudFormation's JSON has them.
pub fn long_form(value: &serde_norway::Value) -> Result<Value> {
    use serde_norway::Value as Yaml;
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Number(n) => serde_json::to_value(n)?,
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Sequence(items) => items.iter().map(long_form).collect::<Result<_>>()?,
        Yaml::Mapping(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let key = match key {
                        Yaml::String(s) => s.clone(),
                        other => serde_norway::to_string(other)?.trim().to_string(),
                    };
                    Ok((key, long_form(value)?))
                })
                .collect::<Result<_>>()?,
        ),
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = long_form(&tagged.value)?;
            let (name, inner) = match (tag, inner) {
                ("Ref" | "Condition", inner) => (tag.to_string(), inner),
                ("GetAtt", Value::String(target)) => (
                    "Fn::GetAtt".to_string(),
                    target
                        .splitn(2, '.')
                        .map(|part| Value::String(part.to_string()))
                        .collect(),
                ),
                (_, inner) => (format!("Fn::{tag}"), inner),
            };
            Value::Object(Map::from_iter([(name, inner)]))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({
            "Parameters": {"List": {"Type": "String", "Default": "a,b"}},
            "Conditions": {"HasList": {"Fn::Not": [{"Fn::Equals": [{"Ref": "List"}, ""]}]}},
            "Mappings": {"M": {"aws-cn": {"K": "china"}}}
        })
    }

    fn resolve(stack: &StackValues, value: Value) -> Result<Value> {
        Resolver::new(&template(), stack).resolve(&value)
    }

    #[test]
    fn functions_resolve_as_cloudformation_resolves_them() {
        let stack = StackValues::new("aws-cn", "cn-north-1");
        let value = json!({
            "sub": {"Fn::Sub": "arn:${AWS::Partition}:${!Literal}:${List}"},
            "named": {"Fn::Sub": ["${X}-${AWS::Region}", {"X": {"Fn::FindInMap": ["M", {"Ref": "AWS::Partition"}, "K"]}}]},
            "split": {"Fn::Split": [",", {"Fn::Join": ["", [{"Ref": "List"}, ",c"]]}]},
            "if": {"Fn::If": ["HasList", "yes", "no"]},
            "plain": {"type": "string", "n": 1}
        });
        assert_eq!(
            resolve(&stack, value.clone()).unwrap(),
            json!({
                "sub": "arn:aws-cn:${Literal}:a,b",
                "named": "china-cn-north-1",
                "split": ["a", "b", "c"],
                "if": "yes",
                "plain": {"type": "string", "n": 1}
            })
        );
        let empty = stack.parameter("List", "");
        assert_eq!(resolve(&empty, value).unwrap()["if"], "no");
    }

    #[test]
    fn what_is_not_known_here_is_an_error_that_names_it() {
        let stack = StackValues::new("aws", "us-east-1");
        for (value, expected) in [
            (json!({"Fn::GetAtt": ["A", "Arn"]}), "Fn::GetAtt"),
            (json!({"Ref": "AWS::AccountId"}), "AWS::AccountId"),
            (json!({"Fn::Sub": "${A.Arn}"}), "A.Arn"),
            (json!({"Fn::FindInMap": ["M", "aws", "K"]}), "M.aws.K"),
            (json!({"Fn::If": ["Nope", 1, 2]}), "Nope"),
        ] {
            let error = format!("{:#}", resolve(&stack, value).unwrap_err());
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn short_forms_are_written_long() {
        let yaml: serde_norway::Value =
            serde_norway::from_str("a: !Ref X\nb: !GetAtt F.Arn\nc: !Split [',', !Ref X]\n")
                .unwrap();
        assert_eq!(
            long_form(&yaml).unwrap(),
            json!({"a": {"Ref": "X"}, "b": {"Fn::GetAtt": ["F", "Arn"]}, "c": {"Fn::Split": [",", {"Ref": "X"}]}})
        );
    }
}
