"""Reference re-run of Homework 8's own training code (notebook 000_10bf2904adbdbe30.txt).

This module owns a standalone copy of the notebook's code as it prints it, and nothing of the
engine: its Layer / NeuralNetwork, its SGDOptimizer, MomentumOptimizer, RMSPropOptimizer and
AdamOptimizer, its LayerNorm / BatchNorm layers and ResidualLayer, its data loaders
(FashionMNIST, Compose([ToTensor(), Normalize((0.2860,), (0.3530,))]), batch 256, shuffled,
validating on the 10,000 test images in one batch) and its run_model loop (10 epochs, lr 1e-3,
the printed Train Loss / Valid Loss / Valid Accuracy). It trains each run of hw8-optimizers and
hw8-depth20 over several seeds and writes assets/experiments/reference/<experiment-id>.json.

Usage (one process, one thread; nice it on a shared machine):
  nice -n 10 .venv/bin/python bench/reference_hw8.py [--seeds 0-4] [--runs NAME...]
      [--epochs N --out /tmp/smoke] [--data-dir ../shared/data]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as common  # noqa: E402

SCRIPT = "bench/reference_hw8.py"
NOTEBOOK = "000_10bf2904adbdbe30.txt"

# --- the notebook's constants (its "Set Hyperparameters" cell and the answer cells) ---------
neurons_per_hidden_layer = 20   # [20] * 2 in the notebook; run_model's default width is 20
batch_size = 256                # examples per step
num_epochs = 10
learning_rate = 0.001
data_mean = (0.2860,)           # Fashion-MNIST pixel mean / std after ToTensor (pixels in [0, 1])
data_std = (0.3530,)
epsilon = 1e-7                  # every answer cell sets epsilon = 1e-7 (RMSProp, Adam, norms)
criterion = nn.CrossEntropyLoss()


# --- the notebook's model code, as printed ----------------------------------------------------

class Layer(nn.Module):
    # This class will represent a basic neural network layer with a linear function
    # and an activation (in this case ReLU)
    def __init__(self, in_dimensions, out_dimensions):
        super().__init__()
        self.linear = nn.Linear(in_dimensions, out_dimensions)
        self.activation = nn.ReLU()

    def forward(self, x):
        x = self.linear(x)
        x = self.activation(x)
        return x


class NeuralNetwork(nn.Module):
    def __init__(self, layer_sizes, layer_class=Layer):
        super(NeuralNetwork, self).__init__()
        first_layer = nn.Flatten()
        # layer_class only where the width does not change: the first hidden layer (784 -> 20)
        # is always the plain Layer, so 19 of the 20 hidden layers of the deep runs are normed
        # or residual.
        hidden_layers = [
            (layer_class(nlminus1, nl) if nlminus1 == nl else Layer(nlminus1, nl))
            for nl, nlminus1 in zip(layer_sizes[1:-1], layer_sizes)
        ]
        output_layer = nn.Linear(layer_sizes[-2], layer_sizes[-1])
        all_layers = [first_layer] + hidden_layers + [output_layer]
        self.layers = nn.Sequential(*all_layers)

    def forward(self, X):
        return self.layers(X)


class SGDOptimizer:
    def __init__(self, parameters, lr=0.01):
        self.lr = lr
        self.parameters = list(parameters)

    def step(self):
        for ind, parameter in enumerate(self.parameters):
            update = self.lr * parameter.grad
            parameter -= update


class MomentumOptimizer(SGDOptimizer):
    # Dampened momentum: v <- mu v + (1 - mu) g; w <- w - lr v
    def __init__(self, parameters, lr=0.01, mu=0.9):
        self.lr = lr
        self.mu = mu
        self.parameters = list(parameters)
        self.velocity = [torch.zeros_like(param) for param in self.parameters]

    def step(self):
        for ind, parameter in enumerate(self.parameters):
            self.velocity[ind] = self.mu * self.velocity[ind] + (1 - self.mu) * parameter.grad
            update = self.lr * self.velocity[ind]
            parameter -= update


class RMSPropOptimizer(SGDOptimizer):
    # s <- beta s + (1 - beta) g^2; w <- w - lr g / sqrt(s + eps)   (eps inside the root)
    def __init__(self, parameters, lr=0.01, beta=0.9):
        self.lr = lr
        self.beta = beta
        self.parameters = list(parameters)
        self.scale = [torch.zeros_like(param) for param in self.parameters]

    def step(self):
        for ind, parameter in enumerate(self.parameters):
            self.scale[ind] = self.beta * self.scale[ind] + (1 - self.beta) * (parameter.grad ** 2)
            update = self.lr * parameter.grad / torch.sqrt(self.scale[ind] + epsilon)
            parameter -= update


class AdamOptimizer(SGDOptimizer):
    # The notebook's answer: no bias correction in step() although its formula has one.
    def __init__(self, parameters, lr=0.01, beta1=0.9, beta2=0.99):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.parameters = list(parameters)
        self.velocity = [torch.zeros_like(param) for param in self.parameters]
        self.scale = [torch.zeros_like(param) for param in self.parameters]

    def step(self):
        for ind, parameter in enumerate(self.parameters):
            self.velocity[ind] = self.beta1 * self.velocity[ind] + (1 - self.beta1) * parameter.grad
            self.scale[ind] = (self.beta2 * self.scale[ind]
                               + (1 - self.beta2) * (parameter.grad ** 2))
            update = self.lr * self.velocity[ind] / torch.sqrt(self.scale[ind] + epsilon)
            parameter -= update


class LayerNorm(nn.Module):
    # No affine parameters; x.var is the unbiased (d - 1) variance, as the notebook's formula.
    def __init__(self):
        super().__init__()

    def forward(self, x):
        xmean = x.mean(dim=1, keepdims=True)
        xvar = x.var(dim=1, keepdims=True)
        return (x - xmean) / torch.sqrt(xvar + epsilon)


class LayerNormLayer(nn.Module):
    def __init__(self, in_dimensions, out_dimensions):
        super().__init__()
        self.linear = nn.Linear(in_dimensions, out_dimensions)
        self.layer_norm = LayerNorm()
        self.activation = nn.ReLU()

    def forward(self, x):
        x = self.linear(x)
        x = self.layer_norm(x)
        x = self.activation(x)
        return x


class BatchNorm(nn.Module):
    # As printed: the running statistics are plain tensors updated in place from the batch's
    # (not detached) mean and unbiased variance, beta 0.9; evaluation uses them.
    def __init__(self, dimensions, beta=0.9):
        super().__init__()
        self.beta = beta
        self.running_mean = torch.zeros((1, dimensions))
        self.running_var = torch.ones((1, dimensions))

    def forward(self, x):
        self.running_mean = self.running_mean.to(x.device)
        self.running_var = self.running_var.to(x.device)
        if self.training:
            xmean = x.mean(dim=0, keepdims=True)
            xvar = x.var(dim=0, keepdims=True)
            self.running_mean *= self.beta
            self.running_var *= self.beta
            self.running_mean += (1 - self.beta) * xmean
            self.running_var += (1 - self.beta) * xvar
            return (x - xmean) / torch.sqrt(xvar + epsilon)
        else:
            return (x - self.running_mean) / torch.sqrt(self.running_var + epsilon)


class BatchNormLayer(nn.Module):
    def __init__(self, in_dimensions, out_dimensions):
        super().__init__()
        self.linear = nn.Linear(in_dimensions, out_dimensions)
        self.layer_norm = BatchNorm(out_dimensions)
        self.activation = nn.ReLU()

    def forward(self, x):
        x = self.linear(x)
        x = self.layer_norm(x)
        x = self.activation(x)
        return x


class ResidualLayer(nn.Module):
    # ReLU(x W^T + b) + x
    def __init__(self, dimensions, *args):
        super().__init__()
        self.linear = nn.Linear(dimensions, dimensions)
        self.activation = nn.ReLU()

    def forward(self, x):
        x_og = x
        x = self.linear(x)
        x = self.activation(x) + x_og
        return x


# --- the notebook's data ------------------------------------------------------------------------

class TransformedOnce(Dataset):
    """A torchvision dataset with its transform applied once per image and kept.

    The notebook transforms every image on every epoch; the transform is deterministic, so
    each item (and so each batch the DataLoader draws) is bit-identical to the notebook's, and
    the DataLoader's sampler draws the same random numbers. This only saves the ~60,000
    PIL conversions per epoch (about 8 s of a 9 s epoch on this machine). `data`, `targets`
    and `classes` are the wrapped dataset's, which run_model reads as the notebook does."""

    def __init__(self, dataset):
        self.data, self.targets, self.classes = dataset.data, dataset.targets, dataset.classes
        items = [dataset[i] for i in range(len(dataset))]
        self.images = torch.stack([x for x, _ in items])
        self.labels = [y for _, y in items]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def fmnist_datasets(path, dataset_class=None):
    """The notebook's two datasets (train=True for training, train=False for validation) with
    its transforms, read offline from `path` (download=False)."""
    from torchvision.datasets import FashionMNIST
    from torchvision.transforms import Compose, Normalize, ToTensor

    dataset_class = dataset_class or FashionMNIST
    xforms = Compose([ToTensor(), Normalize(data_mean, data_std)])
    train_dataset = dataset_class(root=path, train=True, download=False, transform=xforms)
    valid_dataset = dataset_class(root=path, train=False, download=False, transform=xforms)
    return TransformedOnce(train_dataset), TransformedOnce(valid_dataset)


def get_fmnist_data_loaders(train_dataset, valid_dataset, batch_size, valid_batch_size=0):
    # As the notebook's function, with the datasets built once per process (run_model in the
    # notebook rebuilds them each call; that reads the same files and draws no random numbers).
    tbs = len(train_dataset) if batch_size == 0 else batch_size
    train_loader = DataLoader(train_dataset, batch_size=tbs, shuffle=True)
    vbs = len(valid_dataset) if valid_batch_size == 0 else valid_batch_size
    valid_loader = DataLoader(valid_dataset, batch_size=vbs, shuffle=True)
    return train_loader, valid_loader


# --- the notebook's run_model, returning its printed numbers per epoch --------------------------

def run_model(datasets, optimizer=SGDOptimizer, layer_type=Layer, number_of_hidden_layers=2,
              neurons_per_hidden_layer=neurons_per_hidden_layer, learning_rate=learning_rate,
              num_epochs=num_epochs, device="cpu", progress=None):
    """The notebook's run_model without its plots: returns {"train/epoch_loss": [..],
    "val/loss": [..], "val/acc": [..]} per epoch, val/acc in %. The caller seeds torch."""
    train_loader, valid_loader = get_fmnist_data_loaders(*datasets, batch_size)
    nx = train_loader.dataset.data.shape[1:].numel()
    ny = len(train_loader.dataset.classes)
    layer_sizes = [nx] + [neurons_per_hidden_layer] * number_of_hidden_layers + [ny]
    model = NeuralNetwork(layer_sizes, layer_type).to(device)
    t = 0
    opt = optimizer(model.parameters(), learning_rate)
    out = {"train/epoch_loss": [], "val/loss": [], "val/acc": []}
    for epoch in range(num_epochs):
        model.train()
        train_N = len(train_loader.dataset)
        num_train_batches = len(train_loader)
        train_dataiterator = iter(train_loader)
        train_loss_mean = 0
        for batch in range(num_train_batches):
            train_X, train_Y = next(train_dataiterator)
            train_X, train_Y = train_X.to(device), train_Y.to(device)
            train_output = model(train_X)
            train_loss = criterion(train_output, train_Y)
            num_in_batch = len(train_X)
            # "Train Loss": each step's mean loss weighted by its batch's share of the epoch
            tloss = train_loss.item() * num_in_batch / train_N
            train_loss_mean += tloss
            model.zero_grad()
            train_loss.backward()
            t += 1
            with torch.no_grad():
                opt.step()
        model.eval()
        valid_N = len(valid_loader.dataset)
        valid_loss_mean = 0
        valid_correct = 0
        with torch.no_grad():
            for valid_X, valid_Y in valid_loader:
                valid_X, valid_Y = valid_X.to(device), valid_Y.to(device)
                valid_output = model(valid_X)
                valid_loss = criterion(valid_output, valid_Y)
                num_in_batch = len(valid_X)
                vloss = valid_loss.item() * num_in_batch / valid_N
                valid_loss_mean += vloss
                predictions = valid_output.argmax(1)
                valid_correct += (predictions == valid_Y).type(torch.float).sum().item()
        valid_accuracy = 100 * (valid_correct / valid_N)
        out["train/epoch_loss"].append(train_loss_mean)
        out["val/loss"].append(valid_loss_mean)
        out["val/acc"].append(valid_accuracy)
        if progress:
            progress(f"[{epoch+1:>2}/{num_epochs}] Train Loss = {train_loss_mean:.4f}; "
                     f"Valid Loss = {valid_loss_mean:.4f}; "
                     f"Valid Accuracy = {valid_accuracy:>0.1f}%")
    return out


# --- the experiments: run names as in assets/experiments/*.yaml --------------------------------

COMMON_ASSUMPTIONS = [
    "The notebook seeds nothing; each run here calls torch.manual_seed(seed) first, so model "
    "initialization and the DataLoader's shuffling come from that seed.",
    "Data: the official Fashion-MNIST files read offline with torchvision's FashionMNIST "
    "(download=False); the notebook downloads them. Training on the 60,000 training images, "
    "validation on the 10,000 test images (train=False), as the notebook.",
    "The notebook's transform Compose([ToTensor(), Normalize((0.2860,), (0.3530,))]) is applied "
    "once per image and kept (it is deterministic): batches and random draws are identical to "
    "transforming on the fly, only faster.",
    "CPU, one thread (torch.set_num_threads(1)); the notebook printed 'Using cpu device' too.",
    "train/epoch_loss is the notebook's printed 'Train Loss': each step's mean cross-entropy "
    "times its batch size over 60,000, summed over the epoch (the last batch has 96 images). "
    "val/loss is its 'Valid Loss' (the 10,000 validation images in one batch) and val/acc its "
    "'Valid Accuracy' in %.",
    "The notebook's printout starts at epoch 2 (the first line is lost to its progress bar); "
    "per_epoch lists here start at epoch 1.",
]

EXPERIMENTS = [
    common.ExperimentSpec(
        id="hw8-optimizers", notebook=NOTEBOOK,
        runs=[
            common.RunSpec("SGD", num_epochs, {"optimizer": SGDOptimizer}, "run_model()"),
            common.RunSpec("Momentum", num_epochs, {"optimizer": MomentumOptimizer},
                           "run_model(optimizer=MomentumOptimizer)"),
            common.RunSpec("RMSProp", num_epochs, {"optimizer": RMSPropOptimizer},
                           "run_model(optimizer=RMSPropOptimizer)"),
            common.RunSpec("Adam", num_epochs, {"optimizer": AdamOptimizer},
                           "run_model(optimizer=AdamOptimizer)"),
        ],
        assumptions=COMMON_ASSUMPTIONS + [
            "run_model passes only the learning rate to each optimizer, so the class defaults "
            "hold: MomentumOptimizer mu=0.9, RMSPropOptimizer beta=0.9, AdamOptimizer "
            "beta1=0.9, beta2=0.99; epsilon = 1e-7 inside the square root; Adam's step() has "
            "no bias correction (as the notebook's answer code, though its formula has one).",
        ]),
    common.ExperimentSpec(
        id="hw8-depth20", notebook=NOTEBOOK,
        runs=[
            common.RunSpec("Plain", num_epochs, {"number_of_hidden_layers": 20},
                           "run_model(number_of_hidden_layers=20)"),
            common.RunSpec("Layer norm", num_epochs,
                           {"number_of_hidden_layers": 20, "layer_type": LayerNormLayer},
                           "run_model(number_of_hidden_layers=20, layer_type=LayerNormLayer)"),
            common.RunSpec("Batch norm", num_epochs,
                           {"number_of_hidden_layers": 20, "layer_type": BatchNormLayer},
                           "run_model(number_of_hidden_layers=20, layer_type=BatchNormLayer)"),
            common.RunSpec("Residual", num_epochs,
                           {"number_of_hidden_layers": 20, "layer_type": ResidualLayer},
                           "run_model(number_of_hidden_layers=20, layer_type=ResidualLayer)"),
            # Q15 compares the deep nets with "the shallower network": run_model()'s 2x20 SGD.
            common.RunSpec("Shallow", num_epochs, {}, "run_model()"),
        ],
        assumptions=COMMON_ASSUMPTIONS + [
            "NeuralNetwork uses layer_type only where the width does not change, so the first "
            "hidden layer (784 -> 20) is the plain Linear+ReLU Layer and 19 hidden layers are "
            "LayerNormLayer / BatchNormLayer / ResidualLayer, as the notebook's code does.",
            "LayerNorm and BatchNorm have no affine parameters, use the unbiased variance "
            "(x.var) and epsilon 1e-7 inside the square root; BatchNorm keeps running mean and "
            "variance with beta 0.9 (starting at 0 and 1) and uses them in evaluation.",
            "'Shallow' is run_model() with its defaults (2 hidden layers of 20, SGD, lr 1e-3), "
            "the shallower network Q15's answer compares with; it is the same code and seeds "
            "as hw8-optimizers' SGD run.",
        ]),
]


def train_seed(run: common.RunSpec, seed: int, datasets, epochs: int, progress=None) -> dict:
    torch.manual_seed(seed)
    return run_model(datasets, num_epochs=epochs, progress=progress,
                     **run.options)


def main(argv=None) -> int:
    parser = common.build_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    try:
        seeds, selection = common.check_args(args, EXPERIMENTS)
        torch.set_num_threads(1)
        start_all = time.perf_counter()
        print(f"machine: {common.machine()}; {common.versions()}; 1 thread", flush=True)
        with common.ExtractedData(args.data_dir, "FashionMNIST") as root:
            t0 = time.perf_counter()
            datasets = fmnist_datasets(root)
            print(f"data: {len(datasets[0])} train / {len(datasets[1])} validation images "
                  f"transformed in {time.perf_counter() - t0:.1f} s", flush=True)
            for exp, runs in selection:
                start_exp = time.perf_counter()
                results = {}
                for run in runs:
                    epochs = args.epochs or run.epochs
                    per_seed, start_run = [], time.perf_counter()
                    for seed in seeds:
                        t0 = time.perf_counter()
                        out = train_seed(run, seed, datasets, epochs)
                        per_seed.append(out)
                        print(f"{exp.id} | {run.name} | seed {seed}: val/acc "
                              f"{out['val/acc'][-1]:.2f}%, val/loss {out['val/loss'][-1]:.4f},"
                              f" train loss {out['train/epoch_loss'][-1]:.4f} "
                              f"({time.perf_counter() - t0:.1f} s)", flush=True)
                    results[run.name] = {
                        "call": run.call,
                        "epochs": epochs,
                        "seeds": seeds,
                        "seconds": round(time.perf_counter() - start_run, 1),
                        "per_epoch": {
                            "val/acc": [common.round_values(o["val/acc"], 2) for o in per_seed],
                            "val/loss": [common.round_values(o["val/loss"], 5) for o in per_seed],
                            "train/epoch_loss": [common.round_values(o["train/epoch_loss"], 5)
                                                 for o in per_seed],
                        },
                    }
                path = common.write_result(args.out, exp, SCRIPT,
                                           common.command_line(SCRIPT, argv),
                                           time.perf_counter() - start_exp, results)
                print(f"wrote {path} ({time.perf_counter() - start_exp:.0f} s)", flush=True)
    except common.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"total {time.perf_counter() - start_all:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
