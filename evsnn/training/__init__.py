"""Training: the reference ANNs that evsnn converts (:mod:`~evsnn.training.ann`), and spiking networks trained
directly with surrogate gradients (:mod:`~evsnn.training.snn`, :mod:`~evsnn.training.surrogate`) on the torch
engine's own step function, so that a trained network runs unchanged on every engine; seed 004's spiking
LSTM-style layer (:mod:`~evsnn.training.recurrent`), which runs in torch only, and its network over
condensed dilated windows (:mod:`~evsnn.training.condensed`)."""

from .ann import RECIPE, accuracy, diehl_cnn, diehl_mlp, random_shift, train_classifier, train_diehl
from .condensed import CondensedNetwork, train_condensed
from .recurrent import SpikingLSTM, SpikingLSTMClassifier, lstm_accumulates, lstm_ops
from .snn import SpikingNetwork, train_snn
from .surrogate import SURROGATES, Surrogate, surrogate

__all__ = ["diehl_mlp", "diehl_cnn", "train_diehl", "RECIPE", "train_classifier", "accuracy", "random_shift",
           "SpikingNetwork", "train_snn", "Surrogate", "SURROGATES", "surrogate", "SpikingLSTM",
           "SpikingLSTMClassifier", "lstm_ops", "lstm_accumulates", "CondensedNetwork", "train_condensed"]
