"""Encoders and whole models composed from :mod:`mmgraph.nn` layers, made by name through the registry."""

from mmgraph.models.baselines import (
    CNNMLP,
    BagOfWordsRetrieval,
    BaselineVQAConfig,
    BoWRetrievalConfig,
    QuestionEncoder,
    QuestionOnly,
    RelationNetwork,
)
from mmgraph.models.encoder import VARIANTS, EncoderOutput, MMGraphEncoder, MMGraphEncoderConfig
from mmgraph.models.registry import (
    DATA_KEYS,
    build_config,
    create_model,
    is_model,
    list_models,
    model_kwargs_from_dataset,
    register_model,
)
from mmgraph.models.retrieval import (
    DualFeatures,
    RerankResult,
    RetrievalBase,
    RetrievalModel,
    RetrievalModelConfig,
    RetrievalOutput,
)
from mmgraph.models.vqa import VQABase, VQAModel, VQAModelConfig

__all__ = [
    "MMGraphEncoder",
    "MMGraphEncoderConfig",
    "EncoderOutput",
    "VARIANTS",
    "register_model",
    "create_model",
    "list_models",
    "is_model",
    "build_config",
    "model_kwargs_from_dataset",
    "DATA_KEYS",
    "VQABase",
    "VQAModel",
    "VQAModelConfig",
    "RetrievalBase",
    "RetrievalModel",
    "RetrievalModelConfig",
    "RetrievalOutput",
    "RerankResult",
    "DualFeatures",
    "QuestionEncoder",
    "BaselineVQAConfig",
    "QuestionOnly",
    "CNNMLP",
    "RelationNetwork",
    "BoWRetrievalConfig",
    "BagOfWordsRetrieval",
]
