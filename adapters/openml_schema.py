"""What the OpenML server accepts: its upload schemas and limits, checked here before anything is saved or posted.

The server validates a flow upload against `openml.implementation.upload.xsd`
(error 163) and a run upload against `openml.run.upload.xsd` (error 202), then
stores the values in MySQL columns with their own widths; the PHP image caps
the size of a request. These rules are written out below as facts, each with
the file of github.com/openml/OpenML (or openml/EvaluationEngine) that states
it, so a flow, run or predictions file that the server would refuse fails here
with one error naming the field and the limit, not as a server round trip.

Only the elements the harness can produce need to be right, but the check
walks the full sequences (order, occurrences, types), so an element that the
client adds later in the wrong place is caught too. The harness posts no task:
see platforms/openml/README.md ("Which task").
"""
from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from typing import Sequence

from core.errors import UsageError

OML = "{http://openml.org/openml}"
FLOW_XSD = "openml_OS/views/pages/api_new/v1/xsd/openml.implementation.upload.xsd"
RUN_XSD = "openml_OS/views/pages/api_new/v1/xsd/openml.run.upload.xsd"
DB_SCHEMA = "downloads/openml_expdb.sql"
PHP_INI = "docker/config/php.ini"

# docker/config/php.ini of the server image: the largest file and the largest request PHP takes.
UPLOAD_MAX_FILESIZE = 2 * 1024 * 1024  # upload_max_filesize = 2M
POST_MAX_SIZE = 8 * 1024 * 1024  # post_max_size = 8M


class SchemaError(UsageError):
    """An upload the OpenML server would refuse; the message names the field and the rule."""


# --- Simple types -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Text:
    """An xs:string restriction: a pattern (anchored, as XSD patterns are) and a length range in characters."""

    name: str
    pattern: str
    min_length: int
    max_length: int | None

    def problem(self, value: str) -> str | None:
        if len(value) < self.min_length:
            return f"is empty; {self.name} needs at least {self.min_length} character"
        if self.max_length is not None and len(value) > self.max_length:
            return f"is {len(value)} characters; {self.name} allows at most {self.max_length}"
        if not re.fullmatch(self.pattern, value, flags=re.DOTALL):
            bad = next((c for c in value if not re.fullmatch(self.pattern, c, flags=re.DOTALL)), None)
            return f"has {bad!r}, which {self.name} does not allow (pattern {self.pattern})"
        return None


@dataclasses.dataclass(frozen=True)
class Lexical:
    """A built-in XSD type, by its lexical form."""

    name: str
    pattern: str

    def problem(self, value: str) -> str | None:
        if not re.fullmatch(self.pattern, value.strip()):
            return f"is {value[:40]!r}, not an {self.name}"
        return None


# XSD's \p{IsBasicLatin} is the block U+0000-U+007F.
BASIC_LATIN = r"[\x00-\x7f]*"
SYSTEM = r"[a-zA-Z0-9_\-\.]+"
FLOW_CASUAL = r"[a-zA-Z0-9_\-\.,\(\):=]+"
RUN_CASUAL = r"[a-zA-Z0-9_\-\.,\(\):]+"

XS_INT = Lexical("xs:int", r"[+-]?\d{1,10}")  # 32 bits: at most 10 digits (the range itself is not checked)
XS_INTEGER = Lexical("xs:integer", r"[+-]?\d+")
# xs:double: Python's 'nan' and 'inf' are not its NaN and INF.
XS_DOUBLE = Lexical("xs:double", r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?INF|NaN")
XS_DATETIME = Lexical("xs:dateTime", r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
XS_ANYURI = Lexical("xs:anyURI", r"\S*")

# Defined identically in openml.implementation.upload.xsd and openml.run.upload.xsd:
SYSTEM128 = Text("oml:system_string128", SYSTEM, 1, 128)
LATIN128 = Text("oml:basic_latin128", BASIC_LATIN, 1, 128)
LATIN1024 = Text("oml:basic_latin1024", BASIC_LATIN, 1, 1024)
LATIN2048 = Text("oml:basic_latin2048", BASIC_LATIN, 0, 2048)  # "TODO: NOTE THAT MIN LENGTH IS 0"
# The casual strings differ: the flow schema's allow '=', the run schema's do not.
F_CASUAL1024 = Text("oml:casual_string1024", FLOW_CASUAL, 1, 1024)
F_CASUAL128 = Text("oml:casual_string128", FLOW_CASUAL, 1, 128)
F_CASUAL64 = Text("oml:casual_string64", FLOW_CASUAL, 1, 64)
R_CASUAL1024 = Text("oml:casual_string1024", RUN_CASUAL, 1, 1024)
R_CASUAL128 = Text("oml:casual_string128", RUN_CASUAL, 1, 128)


# --- Complex types: xs:sequence of elements ------------------------------------------------

@dataclasses.dataclass(frozen=True)
class El:
    name: str
    type: "Text | Lexical | Seq"
    min: int = 1
    max: int | None = 1  # None: unbounded


@dataclasses.dataclass(frozen=True)
class Seq:
    name: str
    elements: Sequence[El]
    attributes: Sequence[tuple[str, "Text | Lexical"]] = ()


# openml.implementation.upload.xsd, complexType "parameter"
FLOW_PARAMETER = Seq("oml:parameter", [
    El("name", F_CASUAL1024), El("data_type", LATIN128, 0), El("default_value", LATIN2048, 0),
    El("description", LATIN1024, 0), El("recommendedRange", LATIN1024, 0)])
FLOW_QUALITY = Seq("oml:quality", [El("name", SYSTEM128), El("value", SYSTEM128)])
# openml.implementation.upload.xsd, complexType "flow" (components hold flows: filled in below)
_FLOW_ELEMENTS: list[El] = [
    El("id", XS_INT, 0), El("uploader", XS_INT, 0), El("name", F_CASUAL1024), El("custom_name", LATIN128, 0),
    El("class_name", F_CASUAL128, 0), El("version", XS_INT, 0), El("external_version", LATIN128, 0),
    El("description", LATIN1024), El("creator", F_CASUAL128, 0, None), El("contributor", F_CASUAL128, 0, None),
    El("upload_date", XS_DATETIME, 0), El("licence", F_CASUAL64, 0), El("language", F_CASUAL128, 0),
    El("full_description", LATIN1024, 0), El("installation_notes", LATIN1024, 0),
    El("dependencies", LATIN1024, 0), El("implements", F_CASUAL128, 0),
    El("parameter", FLOW_PARAMETER, 0, None), El("component", Seq("oml:component", []), 0, None),
    El("quality", FLOW_QUALITY, 0, None), El("tag", SYSTEM128, 0, None), El("source_url", XS_ANYURI, 0),
    El("binary_url", XS_ANYURI, 0), El("source_format", SYSTEM128, 0), El("binary_format", SYSTEM128, 0),
    El("source_md5", SYSTEM128, 0), El("binary_md5", SYSTEM128, 0)]
FLOW = Seq("oml:flow", _FLOW_ELEMENTS)
_FLOW_ELEMENTS[18] = El("component", Seq("oml:component", [El("identifier", SYSTEM128), El("flow", FLOW)]), 0, None)

# openml.run.upload.xsd
RUN_PARAMETER_SETTING = Seq("oml:parameter_setting", [
    El("name", R_CASUAL1024), El("value", LATIN2048), El("component", XS_INTEGER, 0)])
RUN_EVALUATION = Seq("oml:evaluation", [
    El("did", XS_INTEGER, 0), El("name", SYSTEM128), El("flow_id", XS_INTEGER, 0), El("flow", R_CASUAL1024, 0),
    El("label", R_CASUAL1024, 0), El("value", XS_DOUBLE, 0), El("stdev", XS_DOUBLE, 0),
    El("array_data", LATIN128, 0), El("sample_size", XS_INTEGER, 0)],
    attributes=[(a, XS_INTEGER) for a in ("repeat", "fold", "sample", "interval_start", "interval_end")])
RUN_DATA = Seq("oml:data", [
    El("dataset", Seq("oml:dataset", [El("did", XS_INTEGER), El("name", R_CASUAL128), El("url", XS_ANYURI)]), 0, None),
    El("file", Seq("oml:file", [El("did", XS_INTEGER), El("file_id", XS_INTEGER), El("name", R_CASUAL128),
                                El("url", XS_ANYURI)]), 0, None),
    El("evaluation", RUN_EVALUATION, 0, None)])
RUN = Seq("oml:run", [
    El("run_id", XS_INTEGER, 0), El("uploader", XS_INTEGER, 0), El("uploader_name", LATIN128, 0),
    El("task_id", XS_INTEGER, 0), El("task_type", LATIN128, 0), El("task_evaluation_measure", LATIN128, 0),
    El("flow_id", XS_INTEGER), El("flow_name", R_CASUAL1024, 0), El("setup_id", XS_INTEGER, 0),
    El("setup_string", LATIN2048, 0), El("error_message", LATIN128, 0), El("run_details", R_CASUAL1024, 0),
    El("parameter_setting", RUN_PARAMETER_SETTING, 0, None), El("tag", SYSTEM128, 0, None),
    El("input_data", RUN_DATA, 0), El("output_data", RUN_DATA, 0)])

# Api_run.php run_upload: user-supplied measures must be EvaluationFunctions of the math_function
# table (data/sql/math_function.sql); these are the ones the harness reports.
RUN_MEASURES = ("predictive_accuracy", "wall_clock_time_millis", "wall_clock_time_millis_training",
                "wall_clock_time_millis_testing")
# downloads/openml_expdb.sql: implementation.fullName varchar(1024) holds name + "(" + version + ")"
# (Api_flow.php insertImplementationFromXML); input.name varchar(512) holds a parameter's name.
FULL_NAME_MAX = 1024
VERSION_DIGITS = 10  # room kept for the version the server appends: int(16), so at most 10 digits here
PARAMETER_NAME_MAX = 512


# --- The check ---------------------------------------------------------------------------

def check_sequence(element: ET.Element, seq: Seq, where: str, source: str) -> None:
    """Raise SchemaError unless `element`'s children follow `seq` (order, occurrences, types) and its attributes fit."""
    for attribute, kind in seq.attributes:
        if attribute in element.attrib:
            _check_value(element.attrib[attribute], kind, f"{where}/@{attribute}", source)
    slot, count = 0, 0
    seen: dict[str, int] = {}
    for child in element:
        name = child.tag.removeprefix(OML)
        if not child.tag.startswith(OML):
            raise SchemaError(f"{where}: element {child.tag} is not in the OpenML namespace ({source})")
        # advance through the sequence to this element's slot; going back is an order violation
        while slot < len(seq.elements) and seq.elements[slot].name != name:
            slot, count = slot + 1, 0
        if slot == len(seq.elements):
            known = [e.name for e in seq.elements]
            if name in known:
                raise SchemaError(f"{where}: oml:{name} comes after elements the schema puts after it "
                                  f"(order: {', '.join(known)}) ({source})")
            raise SchemaError(f"{where}: oml:{name} is not an element of {seq.name} ({source})")
        spec = seq.elements[slot]
        count += 1
        seen[name] = seen.get(name, 0) + 1
        if spec.max is not None and count > spec.max:
            raise SchemaError(f"{where}: oml:{name} appears {count} times; {seq.name} allows {spec.max} ({source})")
        label = f"{where}/oml:{name}" + (f"[{_identity(child, seen[name])}]" if spec.max != 1 else "")
        if isinstance(spec.type, Seq):
            check_sequence(child, spec.type, label, source)
        else:
            if len(child):
                raise SchemaError(f"{label}: has child elements, but is a simple {spec.type.name} ({source})")
            _check_value(child.text or "", spec.type, label, source)
    for spec in seq.elements:
        if spec.min and seen.get(spec.name, 0) < spec.min:
            raise SchemaError(f"{where}: oml:{spec.name} is required in {seq.name} ({source})")


def _identity(element: ET.Element, index: int) -> str:
    """A repeated element by its oml:name (a parameter's, a measure's), else by position."""
    name = element.findtext(OML + "name")
    return f"name={name[:60]}" if name else str(index)


def _check_value(value: str, kind: Text | Lexical, where: str, source: str) -> None:
    problem = kind.problem(value)
    if problem:
        raise SchemaError(f"{where} {problem} ({source})")


def _root(xml: str, seq: Seq, what: str) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise SchemaError(f"{what} is not well-formed XML ({e})") from None
    if root.tag != OML + seq.name.removeprefix("oml:"):
        raise SchemaError(f"{what}: the root element is {root.tag}, expected {seq.name}")
    return root


def check_flow_xml(xml: str) -> None:
    """The flow upload as the server checks it: the schema, then the database columns it lands in."""
    root = _root(xml, FLOW, "the OpenML flow")
    check_sequence(root, FLOW, "oml:flow", FLOW_XSD)
    name = root.findtext(OML + "name") or ""
    if len(name) + VERSION_DIGITS + 2 > FULL_NAME_MAX:
        raise SchemaError(f"oml:flow/oml:name is {len(name)} characters; the server stores name(version) in "
                          f"implementation.fullName varchar({FULL_NAME_MAX}), so at most "
                          f"{FULL_NAME_MAX - VERSION_DIGITS - 2} fit ({DB_SCHEMA}, Api_flow.php)")
    for parameter in root.iter(OML + "parameter"):
        pname = parameter.findtext(OML + "name") or ""
        if len(pname) > PARAMETER_NAME_MAX:
            raise SchemaError(f"flow parameter {pname[:40]}...: {len(pname)} characters; input.name is "
                              f"varchar({PARAMETER_NAME_MAX}) ({DB_SCHEMA})")


def check_run_xml(xml: str, folds: int | None = None, repeats: int | None = None) -> None:
    """The run description as the server checks it: the schema, the known measures, legal folds and repeats."""
    root = _root(xml, RUN, "the OpenML run description")
    check_sequence(root, RUN, "oml:run", RUN_XSD)
    if root.find(OML + "task_id") is None:
        raise SchemaError(f"oml:run/oml:task_id is required for a run upload ({RUN_XSD}, Api_run.php)")
    for evaluation in root.iter(OML + "evaluation"):
        measure = evaluation.findtext(OML + "name")
        if measure not in RUN_MEASURES:
            raise SchemaError(f"run measure {measure!r} is not one the harness reports ({', '.join(RUN_MEASURES)})")
        # Estimation_procedure.php check_legal: fold < folds and repeat < repeats of the task (error 216)
        for attribute, limit in (("fold", folds), ("repeat", repeats)):
            value = evaluation.get(attribute)
            if limit is not None and value is not None and not 0 <= int(value) < limit:
                raise SchemaError(f"run measure {measure} for {attribute} {value}: the task has {limit} "
                                  f"({attribute}s 0-{limit - 1}) (Estimation_procedure.php check_legal)")


def check_predictions_header(attributes: Sequence[tuple[str, object]], class_labels: Sequence[str]) -> None:
    """The columns the evaluation engine reads (EvaluateBatchPredictions.java): row_id, repeat, fold,
    prediction, and confidence.<label> for every class label of the task."""
    names = [name for name, _ in attributes]
    needed = ["row_id", "repeat", "fold", "prediction"] + [f"confidence.{label}" for label in class_labels]
    missing = [n for n in needed if n not in names]
    if missing:
        raise SchemaError(f"predictions.arff lacks the column(s) {', '.join(missing)} that the evaluation engine "
                          "reads (EvaluationEngine: evaluate/EvaluateBatchPredictions.java)")


def upload_size_warnings(files: dict[str, int]) -> list[str]:
    """Warnings for files (name -> bytes) above the server image's PHP limits; empty when they fit."""
    warnings = [f"{name} is {_mb(size)}, above upload_max_filesize = 2M of the OpenML server image ({PHP_INI}); "
                "the server may refuse it" for name, size in files.items() if size > UPLOAD_MAX_FILESIZE]
    total = sum(files.values())
    if total > POST_MAX_SIZE:
        warnings.append(f"the upload is {_mb(total)} in all, above post_max_size = 8M of the OpenML server image "
                        f"({PHP_INI}); the server may refuse it")
    return warnings


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB ({size:,} bytes)"

