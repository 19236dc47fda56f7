"""Reference re-run of the UofT MNIST tutorial's training code (notebook 003_d7e47664df4a5dbf.txt).

This module owns a standalone copy of the tutorial's code as it prints it, and nothing of the
engine: its MLP, CNN, MLPBN, MLPBNBeforeReLu and CNNBN models, its data (MNIST with
transforms.ToTensor() only, the first 2,500 training images split 2,000 / 500), its train()
(torch.optim.SGD or Adam, batch 64, batches smaller than 64 skipped, training and validation
accuracy measured after every step) and get_accuracy(). It trains each run of uoft-optimizers,
uoft-zero-init, uoft-bn-position, uoft-mlp and uoft-cnn-batchnorm over several seeds and writes
assets/experiments/reference/<experiment-id>.json.

Usage (one process, one thread; nice it on a shared machine):
  nice -n 10 .venv/bin/python bench/reference_uoft.py [--seeds 0-4] [--runs NAME...]
      [--epochs N --out /tmp/smoke] [--data-dir ../shared/data]
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.optim as optim

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_common as common  # noqa: E402

SCRIPT = "bench/reference_uoft.py"
NOTEBOOK = "003_d7e47664df4a5dbf.txt"
# The tutorial's float(loss) on a tensor that requires grad: newer torch warns; same value.
warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
N_FIRST = 2500                  # images kept: list(mnist_train)[:2500]
N_TRAIN = 2000                  # mnist_train[:2000] trains, mnist_train[2000:] validates


# --- the tutorial's models, as printed --------------------------------------------------------

class MLP(nn.Module):
    def __init__(self, num_hidden):
        super(MLP, self).__init__()
        self.layer1 = nn.Linear(28 * 28, num_hidden)
        self.layer2 = nn.Linear(num_hidden, 10)
        self.num_hidden = num_hidden

    def forward(self, img):
        flattened = img.view(-1, 28 * 28)
        activation1 = self.layer1(flattened)
        activation1 = torch.relu(activation1)
        activation2 = self.layer2(activation1)
        return activation2


class CNN(nn.Module):
    def __init__(self):
        super(CNN, self).__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=4, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(in_channels=4, out_channels=8, kernel_size=3, padding=1)
        self.fc = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = x.view(-1, 8 * 7 * 7)
        return self.fc(x)


class MLPBN(nn.Module):
    # torch's BatchNorm1d (affine, momentum 0.1, eps 1e-5) after the ReLU
    def __init__(self, num_hidden):
        super(MLPBN, self).__init__()
        self.layer1 = nn.Linear(28 * 28, num_hidden)
        self.bn = nn.BatchNorm1d(num_hidden)
        self.layer2 = nn.Linear(num_hidden, 10)
        self.num_hidden = num_hidden

    def forward(self, img):
        flattened = img.view(-1, 28 * 28)
        activation1 = self.layer1(flattened)
        activation1 = torch.relu(activation1)
        activation1 = self.bn(activation1)
        activation2 = self.layer2(activation1)
        return activation2


class MLPBNBeforeReLu(nn.Module):
    def __init__(self, num_hidden):
        super(MLPBNBeforeReLu, self).__init__()
        self.layer1 = nn.Linear(28 * 28, num_hidden)
        self.bn = nn.BatchNorm1d(num_hidden)
        self.layer2 = nn.Linear(num_hidden, 10)
        self.num_hidden = num_hidden

    def forward(self, img):
        flattened = img.view(-1, 28 * 28)
        activation1 = self.layer1(flattened)
        activation1 = self.bn(activation1)
        activation1 = torch.relu(activation1)
        activation2 = self.layer2(activation1)
        return activation2


class CNNBN(nn.Module):
    # batch norm after each ReLU, before the pooling
    def __init__(self):
        super(CNNBN, self).__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=4, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(in_channels=4, out_channels=8, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x):
        x = self.bn1(torch.relu(self.conv1(x)))
        x = self.pool(x)
        x = self.bn2(torch.relu(self.conv2(x)))
        x = self.pool(x)
        x = x.view(-1, 8 * 7 * 7)
        return self.fc(x)


def zero_init(model):
    # Cell [21]: for p in model.parameters(): nn.init.zeros_(p)   (weights and biases)
    for p in model.parameters():
        nn.init.zeros_(p)
    return model


# --- the tutorial's data ----------------------------------------------------------------------

def mnist_split(path, dataset_class=None):
    """Cell [2]: MNIST with ToTensor() only, read offline from `path`; the first 2,500 training
    images as a list of (image, label), split [:2000] / [2000:]. Only the first 2,500 items are
    transformed (list(mnist_train) transforms all 60,000 and keeps the same 2,500)."""
    from torchvision import datasets, transforms

    dataset_class = dataset_class or datasets.MNIST
    mnist_train = dataset_class(path, train=True, download=False,
                                transform=transforms.ToTensor())
    mnist_train = [mnist_train[i] for i in range(min(N_FIRST, len(mnist_train)))]
    return mnist_train[:N_TRAIN], mnist_train[N_TRAIN:]


def get_accuracy(model, mnist_train, mnist_val, train=False):
    # Cell [6], with the two data lists passed in (the tutorial reads them as globals).
    if train:
        data = torch.utils.data.DataLoader(mnist_train, batch_size=4096)
    else:
        data = torch.utils.data.DataLoader(mnist_val, batch_size=1024)
    model.eval()
    correct = 0
    total = 0
    for imgs, labels in data:
        output = model(imgs)
        pred = output.max(1, keepdim=True)[1]
        correct += pred.eq(labels.view_as(pred)).sum().item()
        total += imgs.shape[0]
    return correct / total


def train(model, data, val_data, batch_size=64, weight_decay=0.0, optimizer="sgd",
          learning_rate=0.1, momentum=0.9, data_shuffle=True, num_epochs=10, progress=None):
    """Cell [5] without its plots. Returns per epoch {"train/acc", "val/acc"} (in %, the
    values after the epoch's last step, which is what the tutorial's curves show at that point)
    and "train/epoch_loss" (mean of the epoch's step losses). The caller seeds torch."""
    train_loader = torch.utils.data.DataLoader(data, batch_size=batch_size,
                                               shuffle=data_shuffle)
    criterion = nn.CrossEntropyLoss()
    assert optimizer in ("sgd", "adam")
    if optimizer == "sgd":
        optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum,
                              weight_decay=weight_decay)
    else:
        optimizer = optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    iters, losses, train_acc, val_acc = [], [], [], []
    out = {"train/acc": [], "val/acc": [], "train/epoch_loss": []}
    n = 0
    for epoch in range(num_epochs):
        epoch_losses = []
        for imgs, labels in iter(train_loader):
            if imgs.size()[0] < batch_size:
                continue
            model.train()
            out_ = model(imgs)
            loss = criterion(out_, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            iters.append(n)
            losses.append(float(loss) / batch_size)   # the tutorial's plotted "average" loss
            epoch_losses.append(float(loss))
            # every step, as the tutorial: the two DataLoaders it builds here draw from
            # torch's global generator, so they shape the shuffling that follows
            train_acc.append(get_accuracy(model, data, val_data, train=True))
            val_acc.append(get_accuracy(model, data, val_data, train=False))
            n += 1
        out["train/acc"].append(100 * train_acc[-1])
        out["val/acc"].append(100 * val_acc[-1])
        out["train/epoch_loss"].append(sum(epoch_losses) / len(epoch_losses))
        if progress:
            progress(f"epoch {epoch + 1}/{num_epochs}: train acc {train_acc[-1]:.4f}, "
                     f"val acc {val_acc[-1]:.4f}")
    return out


# --- the experiments: run names as in assets/experiments/uoft-*.yaml --------------------------

def mlp30():
    return MLP(30)


def mlp30_zeros():
    return zero_init(MLP(30))


ADAM = {"optimizer": "adam", "learning_rate": 0.005, "num_epochs": 3}


def spec(name, make, call, **train_kwargs):
    """A run: `make` builds the model (after the seed), `train_kwargs` are train()'s."""
    return common.RunSpec(name, train_kwargs.get("num_epochs", 10),
                          {"make": make, "train": train_kwargs}, call)


COMMON_ASSUMPTIONS = [
    "The tutorial seeds nothing; each run here calls torch.manual_seed(seed) just before "
    "building its model, so initialization and shuffling come from that seed.",
    "Data: the official MNIST files read offline with torchvision's datasets.MNIST "
    "(download=False, transforms.ToTensor() only, pixels in [0, 1]); the first 2,500 training "
    "images, [:2000] to train and [2000:] (500) to validate, as cell [2].",
    "train() measures training accuracy (all 2,000 training images) and validation accuracy "
    "(the 500) after every step, as the tutorial does; per_epoch keeps the values after each "
    "epoch's last step, in % (the tutorial prints 'Final Training/Validation Accuracy' as "
    "fractions after the last step).",
    "Batches smaller than 64 are skipped (`if imgs.size()[0] < batch_size: continue`): 31 steps "
    "per epoch, the 16 images of the last batch unused.",
    "train/epoch_loss is the mean over the epoch's steps of the batch's mean cross-entropy; the "
    "tutorial plots that loss divided once more by the batch size (float(loss)/batch_size), "
    "which is not kept here.",
    "CPU, one thread (torch.set_num_threads(1)). The tutorial prints no numbers, so there is "
    "no printed value to compare with.",
]

EXPERIMENTS = [
    common.ExperimentSpec(
        id="uoft-optimizers", notebook=NOTEBOOK,
        runs=[
            spec("SGD lr 0.1", mlp30, "model = MLP(30); train(model, mnist_train, "
                 "learning_rate=0.1, momentum=0., num_epochs=3)",
                 learning_rate=0.1, momentum=0., num_epochs=3),
            spec("Momentum lr 0.05", mlp30, "model = MLP(30); train(model, mnist_train, "
                 "learning_rate=0.05, momentum=0.9, num_epochs=3)",
                 learning_rate=0.05, momentum=0.9, num_epochs=3),
            spec("Adam lr 0.005", mlp30, "model = MLP(30); train(model, mnist_train, "
                 "optimizer=\"adam\", learning_rate=0.005, num_epochs=3)", **ADAM),
        ],
        assumptions=COMMON_ASSUMPTIONS + [
            "SGD is torch.optim.SGD (momentum not dampened: v <- mu v + g); Adam is "
            "torch.optim.Adam with its defaults (betas 0.9, 0.999, eps 1e-8, bias correction).",
        ]),
    common.ExperimentSpec(
        id="uoft-zero-init", notebook=NOTEBOOK,
        runs=[
            spec("Default init", mlp30, "model = MLP(30); train(model, mnist_train, "
                 "optimizer=\"adam\", learning_rate=0.005, num_epochs=3)", **ADAM),
            spec("All zeros", mlp30_zeros, "model = MLP(30); for p in model.parameters(): "
                 "nn.init.zeros_(p); train(model, mnist_train, optimizer=\"adam\", "
                 "learning_rate=0.005, num_epochs=3)", **ADAM),
        ],
        assumptions=COMMON_ASSUMPTIONS + [
            "'Default init' is cell [15] (the same call without zeroing), torch's default "
            "nn.Linear initialization; it is the same code and seeds as uoft-optimizers' "
            "'Adam lr 0.005'.",
        ]),
    common.ExperimentSpec(
        id="uoft-bn-position", notebook=NOTEBOOK,
        runs=[
            spec("No batch norm", mlp30, "model = MLP(30); train(model, mnist_train, "
                 "optimizer=\"adam\", learning_rate=0.005, num_epochs=3)", **ADAM),
            spec("BN after ReLU", lambda: MLPBN(30), "mlp_bn = MLPBN(30); train(mlp_bn, "
                 "mnist_train, optimizer=\"adam\", learning_rate=0.005, num_epochs=3)", **ADAM),
            spec("BN before ReLU", lambda: MLPBNBeforeReLu(30), "train(MLPBNBeforeReLu(30), "
                 "mnist_train, optimizer=\"adam\", learning_rate=0.005, num_epochs=3)", **ADAM),
        ],
        assumptions=COMMON_ASSUMPTIONS + [
            "'No batch norm' is cell [15] (MLP(30) under the same Adam call), the same code "
            "and seeds as uoft-optimizers' 'Adam lr 0.005'.",
            "Batch norm is torch's nn.BatchNorm1d(30): affine, momentum 0.1, eps 1e-5, batch "
            "statistics in training and running statistics in get_accuracy (model.eval()).",
        ]),
    common.ExperimentSpec(
        id="uoft-mlp", notebook=NOTEBOOK,
        runs=[
            spec("MLP(30)", mlp30, "model = MLP(30); train(model, mnist_train, "
                 "learning_rate=0.1)", learning_rate=0.1),
            spec("MLP(50)", lambda: MLP(50), "model = MLP(50); train(model, mnist_train, "
                 "learning_rate=0.1)", learning_rate=0.1),
            spec("MLP(100)", lambda: MLP(100), "model = MLP(100); train(model, mnist_train, "
                 "learning_rate=0.1)", learning_rate=0.1),
            spec("MLP(30), same batches", mlp30, "model = MLP(30); train(model, mnist_train, "
                 "learning_rate=0.1, data_shuffle=False)", learning_rate=0.1,
                 data_shuffle=False),
        ],
        assumptions=COMMON_ASSUMPTIONS + [
            "train()'s defaults: torch.optim.SGD with momentum 0.9, batch 64, 10 epochs, "
            "shuffled batches (except 'same batches': data_shuffle=False).",
        ]),
    common.ExperimentSpec(
        id="uoft-cnn-batchnorm", notebook=NOTEBOOK,
        runs=[
            spec("CNN, SGD lr 0.1, 5 epochs", CNN, "model = CNN(); train(model, mnist_train, "
                 "batch_size=64, optimizer=\"sgd\", learning_rate=0.1, momentum=0., "
                 "num_epochs=5)", batch_size=64, optimizer="sgd", learning_rate=0.1,
                 momentum=0., num_epochs=5),
            spec("CNN, Adam", CNN, "model = CNN(); train(model, mnist_train, optimizer=\"adam\","
                 " learning_rate=0.005, num_epochs=3)", **ADAM),
            spec("CNN + batch norm, Adam", CNNBN, "train(CNNBN(), mnist_train, "
                 "optimizer=\"adam\", learning_rate=0.005, num_epochs=3)", **ADAM),
        ],
        assumptions=COMMON_ASSUMPTIONS + [
            "Batch norm is torch's nn.BatchNorm2d (affine, momentum 0.1, eps 1e-5), applied "
            "after each ReLU and before the pooling, as CNNBN.forward.",
        ]),
]


def train_seed(run: common.RunSpec, seed: int, split, epochs: int, progress=None) -> dict:
    torch.manual_seed(seed)
    model = run.options["make"]()
    kwargs = {**run.options["train"], "num_epochs": epochs}
    return train(model, split[0], split[1], progress=progress, **kwargs)


def main(argv=None) -> int:
    parser = common.build_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    try:
        seeds, selection = common.check_args(args, EXPERIMENTS)
        torch.set_num_threads(1)
        start_all = time.perf_counter()
        print(f"machine: {common.machine()}; {common.versions()}; 1 thread", flush=True)
        with common.ExtractedData(args.data_dir, "MNIST") as root:
            split = mnist_split(root)
            print(f"data: {len(split[0])} train / {len(split[1])} validation images", flush=True)
            for exp, runs in selection:
                start_exp = time.perf_counter()
                results = {}
                for run in runs:
                    epochs = args.epochs or run.epochs
                    per_seed, start_run = [], time.perf_counter()
                    for seed in seeds:
                        t0 = time.perf_counter()
                        out = train_seed(run, seed, split, epochs)
                        per_seed.append(out)
                        print(f"{exp.id} | {run.name} | seed {seed}: train/acc "
                              f"{out['train/acc'][-1]:.2f}%, val/acc {out['val/acc'][-1]:.2f}%"
                              f" ({time.perf_counter() - t0:.1f} s)", flush=True)
                    results[run.name] = {
                        "call": run.call,
                        "epochs": epochs,
                        "seeds": seeds,
                        "seconds": round(time.perf_counter() - start_run, 1),
                        "per_epoch": {
                            metric: [common.round_values(o[metric], 5 if "loss" in metric else 2)
                                     for o in per_seed]
                            for metric in ("val/acc", "train/acc", "train/epoch_loss")
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
