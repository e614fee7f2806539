#!/usr/bin/env python3
"""Translates the SAM template offline into the CloudFormation the SAM transform produces.

    .venv/bin/python scripts/translate_template.py [TEMPLATE] > translated.json

TEMPLATE defaults to cloudformation/template.yaml. Local files the template names are read the
way `sam build`/`sam package` would ship them: each `Fn::Transform: AWS::Include` is replaced by
the file its Location names, and a state machine's local DefinitionUri by its definition inline
(so the output holds the real ASL); CodeUri, which only names the code, becomes a placeholder S3
location. The translation runs with no AWS credentials and no network: the region is fixed to
us-east-1 and managed policy names resolve from samtranslator's bundled map (an empty fallback
map instead of IAM). Prints JSON on stdout; a template that cannot be translated is an error on
stderr and exit status 1.
"""

import json
import logging
import os
import sys
from pathlib import Path

import yaml

REGION = "us-east-1"
DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "cloudformation" / "template.yaml"
CODE_PLACEHOLDER = "s3://offline-translation/code"


class TranslationError(Exception):
    pass


class TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: !Ref X, !GetAtt A.B, !Sub ..., !If [...]."""


def _short_form(loader, tag, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag in ("Ref", "Condition"):
        return {tag: value}
    if tag == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + tag: value}


TemplateLoader.add_multi_constructor("!", _short_form)


def load_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=TemplateLoader)  # noqa: S506 (a SafeLoader)
    except (OSError, yaml.YAMLError) as e:
        raise TranslationError(f"cannot read {path}: {e}") from e


def inline_includes(node, base):
    """Replaces every Fn::Transform AWS::Include with the local file its Location names."""
    if isinstance(node, list):
        return [inline_includes(item, base) for item in node]
    if not isinstance(node, dict):
        return node
    transform = node.get("Fn::Transform")
    if len(node) == 1 and isinstance(transform, dict) and transform.get("Name") == "AWS::Include":
        location = (transform.get("Parameters") or {}).get("Location")
        if not isinstance(location, str) or "://" in location:
            raise TranslationError(f"AWS::Include of {location!r}: only a local path can be inlined")
        return inline_includes(load_yaml(base / location), base)
    return {key: inline_includes(value, base) for key, value in node.items()}


def is_local(uri):
    return isinstance(uri, str) and not uri.startswith("s3://")


def replace_local_artifacts(template, base):
    functions = (template.get("Globals") or {}).get("Function") or {}
    if is_local(functions.get("CodeUri")):
        functions["CodeUri"] = CODE_PLACEHOLDER
    for resource in (template.get("Resources") or {}).values():
        properties = resource.get("Properties") if isinstance(resource, dict) else None
        if not isinstance(properties, dict):
            continue  # not a resource the translator accepts: it says so
        if resource.get("Type") == "AWS::Serverless::Function" and is_local(properties.get("CodeUri")):
            properties["CodeUri"] = CODE_PLACEHOLDER
        if resource.get("Type") == "AWS::Serverless::StateMachine" and is_local(
            properties.get("DefinitionUri")
        ):
            properties["Definition"] = load_yaml(base / properties.pop("DefinitionUri"))


def translate(path):
    # Nothing is signed or sent: the machine's AWS configuration (profiles, credentials, region)
    # is not read at all, and the region is fixed.
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_DEFAULT_REGION"] = REGION
    try:
        import boto3
        from samtranslator.parser.parser import Parser
        from samtranslator.public.exceptions import InvalidDocumentException
        from samtranslator.translator.translator import Translator
    except ImportError as e:
        raise TranslationError(
            f"{e.name} is not installed for {sys.executable}: samtranslator comes with the "
            "aws-sam-translator package (see requirements.txt and `make venv`)"
        ) from e

    # samtranslator warns about its own feature toggles; real problems are exceptions.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    template = inline_includes(load_yaml(path), path.parent)
    if not isinstance(template, dict):
        raise TranslationError(f"{path} is not a template (a YAML mapping)")
    replace_local_artifacts(template, path.parent)
    # Region and partition (AWS::Region, AWS::Partition, managed policy ARNs) come from this.
    session = boto3.session.Session(region_name=REGION)
    translator = Translator(managed_policy_map=None, sam_parser=Parser(), boto_session=session)
    try:
        return translator.translate(
            sam_template=template,
            parameter_values={},
            passthrough_metadata=True,
            get_managed_policy_map=lambda: {},
        )
    except InvalidDocumentException as e:
        raise TranslationError("\n".join(cause.message for cause in e.causes)) from e
    except Exception as e:  # noqa: BLE001 (samtranslator raises many kinds; all mean "cannot")
        raise TranslationError(f"{type(e).__name__}: {e}") from e


def main(argv):
    if len(argv) > 2:
        print(f"usage: {argv[0]} [TEMPLATE]", file=sys.stderr)
        return 2
    path = Path(argv[1]) if len(argv) == 2 else DEFAULT_TEMPLATE
    try:
        translated = translate(path)
    except TranslationError as e:
        print(f"{argv[0]}: cannot translate {path}:\n{e}", file=sys.stderr)
        return 1
    json.dump(translated, sys.stdout, indent=2, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
