"""The tutorial notebook runs, cell by cell, against the fixture release on loopback S3."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "tutorials" / "vbn_data_access.ipynb"


def test_tutorial_notebook_executes(tmp_path, vbn_bucket, monkeypatch):
    monkeypatch.setenv("RELEASECACHE_ENDPOINT_URL", vbn_bucket.endpoint_url)
    monkeypatch.setenv("RELEASECACHE_BUCKET", vbn_bucket.bucket)
    monkeypatch.setenv("RELEASECACHE_TUTORIAL_CACHE", str(tmp_path / "cache"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                          for o in cell.get("outputs", []))
               for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    text = "\n".join(outputs.values())
    assert "project_metadata/units.csv changed" in text  # compare_manifests printed the real report
    assert "without abnormalities" in text and "units" in text
    assert "fetched" in text and "0 failed" in text  # the prefetch report
    assert not any(o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", []))
    assert (tmp_path / "cache" / "blobs").is_dir()
