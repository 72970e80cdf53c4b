"""Build an openml-python 0.15.1 cache offline: the files `get_task`/`get_dataset` read before any download.

    <cache>/datasets/554/description.xml   the server's data description (format, target, data URLs)
    <cache>/datasets/554/features.xml      one entry per column; `class` nominal 0..9
    <cache>/datasets/554/dataset.arff      the data (ARFF), or dataset_554.pq (parquet) when the
                                           description has a parquet_url
    <cache>/tasks/<id>/task.xml            the task: dataset, target, estimation procedure
    <cache>/tasks/<id>/datasplits.arff     TRAIN/TEST rows per repeat and fold

`<cache>` is `openml.config.get_cache_directory()` (root cache dir + the server's
reversed host name). The XML follows the server's responses (see
openml-python's tests/files/org/openml/test/); every URL in them points at
`dead_url`, a closed loopback port, so a cache miss fails fast instead of
reaching the internet.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

DATASET_ID = 554


def write_dataset(cache: Path, images: np.ndarray, labels: np.ndarray, dead_url: str,
                  data_format: str = "parquet", pixel_dtype: type = np.uint8, drop_last_pixel: bool = False) -> Path:
    """Dataset 554 (`mnist_784`): pixel1..pixel784 and a nominal `class`, as parquet or ARFF.

    `drop_last_pixel` writes a malformed dataset (783 pixel columns).
    """
    folder = cache / "datasets" / str(DATASET_ID)
    folder.mkdir(parents=True)
    n_pixels = 783 if drop_last_pixel else 784
    flat = images.reshape(len(images), 784)[:, :n_pixels]
    parquet_url = ""
    if data_format == "parquet":
        import pandas as pd

        frame = pd.DataFrame(flat.astype(pixel_dtype), columns=[f"pixel{i}" for i in range(1, n_pixels + 1)])
        frame["class"] = pd.Categorical(labels.astype(str), categories=[str(d) for d in range(10)])
        frame.to_parquet(folder / f"dataset_{DATASET_ID}.pq")
        parquet_url = f"<oml:parquet_url>{dead_url}/datasets/0000/0554/dataset_554.pq</oml:parquet_url>\n"
        md5 = "0" * 32
    else:
        import arff

        text = arff.dumps({
            "relation": "mnist_784", "description": "",
            "attributes": [(f"pixel{i}", "NUMERIC") for i in range(1, n_pixels + 1)]
                          + [("class", [str(d) for d in range(10)])],
            "data": [[*row.tolist(), str(label)] for row, label in zip(flat, labels)],
        })
        (folder / "dataset.arff").write_text(text)
        md5 = hashlib.md5(text.encode()).hexdigest()
    (folder / "description.xml").write_text(f"""<oml:data_set_description xmlns:oml="http://openml.org/openml">
  <oml:id>{DATASET_ID}</oml:id>
  <oml:name>mnist_784</oml:name>
  <oml:version>1</oml:version>
  <oml:description>The MNIST database of handwritten digits with 784 features (test stand-in: {len(images)} generated images).</oml:description>
  <oml:format>ARFF</oml:format>
  <oml:upload_date>2014-09-29T03:28:38</oml:upload_date>
  <oml:licence>Public</oml:licence>
  <oml:url>{dead_url}/data/v1/download/52667/mnist_784.arff</oml:url>
  {parquet_url}<oml:file_id>52667</oml:file_id>
  <oml:default_target_attribute>class</oml:default_target_attribute>
  <oml:visibility>public</oml:visibility>
  <oml:status>active</oml:status>
  <oml:md5_checksum>{md5}</oml:md5_checksum>
</oml:data_set_description>
""")
    features = [_feature(i, f"pixel{i + 1}", "numeric") for i in range(n_pixels)]
    features.append(_feature(n_pixels, "class", "nominal", target=True))
    (folder / "features.xml").write_text('<oml:data_features xmlns:oml="http://openml.org/openml">\n'
                                         + "".join(features) + "</oml:data_features>\n")
    return folder


def _feature(index: int, name: str, data_type: str, target: bool = False) -> str:
    nominal = "".join(f"    <oml:nominal_value>{d}</oml:nominal_value>\n" for d in range(10)) if data_type == "nominal" else ""
    return (f"  <oml:feature>\n    <oml:index>{index}</oml:index>\n    <oml:name>{name}</oml:name>\n"
            f"    <oml:data_type>{data_type}</oml:data_type>\n{nominal}"
            f"    <oml:is_target>{str(target).lower()}</oml:is_target>\n    <oml:is_ignore>false</oml:is_ignore>\n"
            f"    <oml:is_row_identifier>false</oml:is_row_identifier>\n"
            f"    <oml:number_of_missing_values>0</oml:number_of_missing_values>\n  </oml:feature>\n")


# Supervised-classification (task type 1) cross-validation procedures as the server numbers them,
# by (repeats, folds): OpenML's data/sql/estimation_procedure.sql.
CLASSIFICATION_CV = {(1, 10): 1, (5, 2): 2, (10, 10): 3, (100, 10): 23, (1, 4): 25}


def write_task(cache: Path, task_id: int, splits: list[tuple[int, int, np.ndarray, np.ndarray]],
               dead_url: str) -> Path:
    """A supervised classification task on 554 with the given (repeat, fold, train rows, test rows) splits.

    The estimation procedure is the server's cross-validation procedure with that many
    repeats and folds; there must be one (a KeyError says there is not).
    """
    folder = cache / "tasks" / str(task_id)
    folds = 1 + max(f for _, f, _, _ in splits)
    repeats = 1 + max(r for r, _, _, _ in splits)
    procedure_id = CLASSIFICATION_CV[(repeats, folds)]
    folder.mkdir(parents=True)
    (folder / "task.xml").write_text(f"""<oml:task xmlns:oml="http://openml.org/openml">
  <oml:task_id>{task_id}</oml:task_id>
  <oml:task_name>Task {task_id}: mnist_784 (Supervised Classification)</oml:task_name>
  <oml:task_type_id>1</oml:task_type_id>
  <oml:task_type>Supervised Classification</oml:task_type>
  <oml:input name="source_data">
    <oml:data_set>
      <oml:data_set_id>{DATASET_ID}</oml:data_set_id>
      <oml:target_feature>class</oml:target_feature>
    </oml:data_set>
  </oml:input>
  <oml:input name="estimation_procedure">
    <oml:estimation_procedure>
      <oml:id>{procedure_id}</oml:id>
      <oml:type>crossvalidation</oml:type>
      <oml:data_splits_url>{dead_url}/api_splits/get/{task_id}/Task_{task_id}_splits.arff</oml:data_splits_url>
      <oml:parameter name="number_repeats">{repeats}</oml:parameter>
      <oml:parameter name="number_folds">{folds}</oml:parameter>
      <oml:parameter name="percentage"></oml:parameter>
      <oml:parameter name="stratified_sampling">true</oml:parameter>
    </oml:estimation_procedure>
  </oml:input>
  <oml:input name="evaluation_measures">
    <oml:evaluation_measures>
      <oml:evaluation_measure>predictive_accuracy</oml:evaluation_measure>
    </oml:evaluation_measures>
  </oml:input>
  <oml:output name="predictions">
    <oml:predictions>
      <oml:format>ARFF</oml:format>
      <oml:feature name="repeat" type="integer"/>
      <oml:feature name="fold" type="integer"/>
      <oml:feature name="row_id" type="integer"/>
      <oml:feature name="confidence.classname" type="numeric"/>
      <oml:feature name="prediction" type="string"/>
    </oml:predictions>
  </oml:output>
</oml:task>
""")
    lines = ["@relation mnist_784_splits", "", "@attribute type {TRAIN,TEST}", "@attribute rowid numeric",
             "@attribute repeat numeric", "@attribute fold numeric", "", "@data"]
    for repeat, fold, train, test in splits:
        lines += [f"TRAIN,{row},{repeat},{fold}" for row in train] + [f"TEST,{row},{repeat},{fold}" for row in test]
    (folder / "datasplits.arff").write_text("\n".join(lines) + "\n")
    return folder


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int = 0) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Stratified k-fold splits (repeat 0), the way OpenML's cross-validation tasks are made."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=int)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        fold_of[rows] = np.arange(len(rows)) % n_folds
    rows = np.arange(len(labels))
    return [(0, f, rows[fold_of != f], rows[fold_of == f]) for f in range(n_folds)]


# --- A loopback OpenML server: answers uploads, keeps what was posted -------------------------

class UploadServer:
    """The three upload calls the harness makes (flow/exists, flow/, run/) on 127.0.0.1, answered the
    way the server's Api_flow/Api_run controllers answer them (the answer documents are those of
    openml_OS/views/pages/api_new/v1/xml/implementation-exists, implementation-upload and run-upload),
    every request kept for the test.

    `refuse` = (code, message) answers a run upload with the server's error document
    (error-message.tpl.php) and HTTP 412, `returnError`'s default (openml_OS/core/MY_Api_Model.php).
    """

    FLOW_ID, RUN_ID = 4242, 777

    def __init__(self, refuse: tuple[int, str] | None = None):
        import http.server
        import threading

        self.requests: list[dict] = []
        self.refuse = refuse
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fields = parse_form(self.headers.get("Content-Type", ""), body)
                outer.requests.append({"method": "POST", "path": self.path, "fields": fields, "size": len(body)})
                status, text = outer.answer(self.path, fields)
                self._send(status, text)

            def do_GET(self):
                outer.requests.append({"method": "GET", "path": self.path, "fields": {}, "size": 0})
                self._send(412, error_xml(100, "not served by the test server"))

            def _send(self, status, text):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1/xml"

    def answer(self, path: str, fields: dict) -> tuple[int, str]:
        oml = 'xmlns:oml="http://openml.org/openml"'
        if path.endswith("/flow/exists"):
            return 200, f"<oml:flow_exists {oml}><oml:exists>false</oml:exists><oml:id>-1</oml:id></oml:flow_exists>"
        if path.endswith("/flow/"):
            return 200, f"<oml:upload_flow {oml}><oml:id>{self.FLOW_ID}</oml:id></oml:upload_flow>"
        if path.endswith("/run/"):
            if self.refuse:
                return 412, error_xml(*self.refuse)
            return 200, f"<oml:upload_run {oml}><oml:run_id>{self.RUN_ID}</oml:run_id></oml:upload_run>"
        return 412, error_xml(100, f"unknown call {path}")

    def posted(self, suffix: str) -> list[dict]:
        return [r["fields"] for r in self.requests if r["method"] == "POST" and r["path"].endswith(suffix)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def error_xml(code: int, message: str) -> str:
    return (f'<oml:error xmlns:oml="http://openml.org/openml"><oml:code>{code}</oml:code>'
            f"<oml:message>{message}</oml:message></oml:error>")


def parse_form(content_type: str, body: bytes) -> dict[str, bytes]:
    """A multipart/form-data or urlencoded body as {field name: bytes}, parsed by the standard library."""
    import email.parser
    import email.policy
    from urllib.parse import parse_qs

    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                for part in message.iter_parts()}
    return {k: v[0].encode() for k, v in parse_qs(body.decode()).items()}
