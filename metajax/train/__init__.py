"""Training: the sinusoid experiment and the config-driven few-shot trainer."""

from metajax.train.checkpoint import Checkpointer as Checkpointer
from metajax.train.checkpoint import CheckpointError as CheckpointError
from metajax.train.config import Config as Config
from metajax.train.config import SinusoidConfig as SinusoidConfig
from metajax.train.config import apply_overrides as apply_overrides
from metajax.train.config import load_config as load_config
from metajax.train.config import validate as validate
from metajax.train.rl import RLConfig as RLConfig
from metajax.train.rl import RLResult as RLResult
from metajax.train.rl import branch_rl_run as branch_rl_run
from metajax.train.rl import evaluate_rl_run as evaluate_rl_run
from metajax.train.rl import restore_rl_params as restore_rl_params
from metajax.train.rl import rl_test_tasks as rl_test_tasks
from metajax.train.rl import train_rl as train_rl
from metajax.train.runs import Prediction as Prediction
from metajax.train.runs import classify_folders as classify_folders
from metajax.train.runs import load_run as load_run
from metajax.train.sinusoid import SinusoidRun as SinusoidRun
from metajax.train.sinusoid import run_sinusoid_experiment as run_sinusoid_experiment
from metajax.train.sinusoid import train_sinusoid as train_sinusoid
from metajax.train.trainer import NonFiniteError as NonFiniteError
from metajax.train.trainer import TrainResult as TrainResult
from metajax.train.trainer import evaluate_run as evaluate_run
from metajax.train.trainer import train as train
