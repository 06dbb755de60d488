"""Spark: the registered pyfunc scores a DataFrame of pages through `mlflow.pyfunc.spark_udf`,
row for row what the batch scorer writes for the same pages."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.serving.score import score

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,  # starts Spark
    pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
                       reason="Spark needs Java (no `java` on PATH and no JAVA_HOME): "
                              "apt-get install openjdk-17-jre-headless"),
]


def test_spark_udf_matches_the_batch_scorer(trained_default, tmp_path, monkeypatch):
    import mlflow
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    result, folder = trained_default
    labels = [f"p_{name}" for name in result.metrics["model"]["per_class"]]
    pages = pd.DataFrame({"article_id": [p.stem for p in sorted((ROOT / "seeds").glob("*.txt"))],
                          "page": [p.read_text(encoding="utf-8") for p in sorted((ROOT / "seeds").glob("*.txt"))]})
    source = tmp_path / "pages.parquet"
    pages.to_parquet(source)
    batch = pd.read_parquet(score(source, str(result.model_dir), tmp_path / "scored.parquet", text_column="page",
                                  id_column="article_id", progress=False).out)

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    spark = (SparkSession.builder.master("local[2]").appName("test-spark-udf")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
             .config("spark.driver.memory", "1g").config("spark.sql.session.timeZone", "UTC").getOrCreate())
    try:
        result_type = ", ".join(["article_id string", "index array<long>", "start array<long>",
                                 "end array<long>", "text array<string>", "label array<string>"]
                                + [f"{name} array<double>" for name in labels])
        classify = mlflow.pyfunc.spark_udf(
            spark, f"models:/{result.config.tracking.registered_model}/{result.registered_version}",
            result_type=result_type, env_manager="local")
        frame = spark.createDataFrame(pages).repartition(2)
        fields = ["index", "start", "end", "text", "label"] + labels
        sentences = (frame.withColumn("scored", classify(F.struct("article_id", "page")))
                     .select("scored.article_id", F.explode(F.arrays_zip(*[f"scored.{c}" for c in fields])).alias("s"))
                     .select("article_id", *[F.col(f"s.{c}").alias(c) for c in fields])
                     .toPandas())
    finally:
        spark.stop()
    order = {article: n for n, article in enumerate(pages["article_id"])}
    sentences = sentences.sort_values(["article_id", "index"], key=lambda c: c.map(order) if c.name == "article_id"
                                      else c).reset_index(drop=True)
    assert len(sentences) == len(batch) > 0
    exact = ["article_id", "index", "start", "end", "text", "label"]
    pd.testing.assert_frame_equal(sentences[exact], batch[exact], check_dtype=False)
    assert np.allclose(sentences[labels].to_numpy(float), batch[labels].to_numpy(float), rtol=0, atol=1e-12)
