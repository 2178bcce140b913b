"""The `sparse` stage's parameters (`cascade.rankers.sparse`): its encoder, the index switch and each index's knobs.

Only the chosen index's block of knobs enters the stage's cache key (`Sparse.cache_parts`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cascade.rankers.base import Params


class SeismicParams(Params):
    """Seismic's knobs; defaults are the paper's MS MARCO settings, scaled for small corpora by the configs."""

    n_postings: int = Field(3500, gt=0, description="average postings kept per term (build)")
    centroid_fraction: float = Field(0.1, gt=0, le=1, description="blocks per posting list / its length (build)")
    summary_energy: float = Field(0.4, gt=0, le=1, description="share of each block's mass its summary keeps (build)")
    doc_cut: int = Field(15, gt=0, description="document terms used to cluster postings into blocks (build)")
    max_fraction: float = Field(1.5, ge=1, description="longest posting list / n_postings (build)")
    nknn: int = Field(0, ge=0, description="neighbours per document in the k-NN graph; 0: none (build)")
    query_cut: int = Field(10, gt=0, description="query terms used, largest weights first (search)")
    heap_factor: float = Field(
        0.7, gt=0, le=1, description="skip a block unless summary x factor beats the k-th (search)"
    )
    n_knn: int = Field(0, ge=0, description="k-NN refinement at search; needs nknn >= n_knn (search)")

    @model_validator(mode="after")
    def _knn_needs_graph(self) -> SeismicParams:
        if self.n_knn > self.nknn:
            raise ValueError(f"n_knn={self.n_knn} needs an index built with nknn >= {self.n_knn} (nknn={self.nknn})")
        return self

    def build_knobs(self) -> dict:
        keys = ("n_postings", "centroid_fraction", "summary_energy", "doc_cut", "max_fraction", "nknn")
        return {k: getattr(self, k) for k in keys}

    def search_knobs(self, k: int) -> dict:
        return {"k": k, "query_cut": self.query_cut, "heap_factor": self.heap_factor, "n_knn": self.n_knn}


class LuceneImpactParams(Params):
    scale: float = Field(100.0, gt=0, description="impacts are round(weight x scale), for documents and queries")


class SparseParams(Params):
    encoder: str = Field("splade-tiny", min_length=1, description="splade-tiny, a local folder or a Hugging Face id")
    index: Literal["seismic", "lucene_impact", "exact"] = "seismic"
    k: int = Field(1000, gt=0)
    max_length: int = Field(256, gt=8, le=512, description="document tokens")
    query_max_length: int = Field(64, gt=4, le=512)
    batch_size: int = Field(32, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    shard_size: int = Field(
        100_000, gt=0, description="passages per corpus-encoding shard: bounds memory; a killed encode resumes"
    )
    vectors: str | None = Field(None, description="a corpus vectors folder made by cascade, instead of encoding")
    measure: bool = Field(True, description="accuracy against exact search and latency, into the manifest")
    seismic: SeismicParams = Field(default_factory=SeismicParams)
    lucene: LuceneImpactParams = Field(default_factory=LuceneImpactParams)
