"""Training throughput, peak memory and (on GPUs with a known peak) model FLOPs utilisation."""

import resource
import time

import torch
import torch.distributed as dist

# Dense bf16 tensor-core peaks in FLOP/s, first matching name wins; other devices report no MFU.
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def training_flops_per_token(model: torch.nn.Module, full_fine_tuning: bool) -> float:
    """6N for full fine-tuning (2N forward, 4N backward); 4N for adapters, whose frozen weights
    get no weight gradients. Attention's own FLOPs are left out, as usual for MFU."""
    parameters = sum(p.numel() for p in model.parameters())
    return (6 if full_fine_tuning else 4) * parameters


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def peak_memory_mb(device: torch.device) -> float:
    """GPU: the most memory torch has allocated; CPU: the process's maximum resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux reports KiB


class ThroughputMeter:
    """Training loss, tokens and samples per second since the last ``restart``, summed over all
    workers; peak memory is the largest of any worker's."""

    def __init__(self, flops_per_token: float, device: torch.device):
        self.flops_per_token = flops_per_token
        self.device = device
        self.restart()

    def restart(self) -> None:
        self.loss_sum, self.steps, self.tokens, self.samples = 0.0, 0, 0, 0
        self.started = time.perf_counter()

    def add(self, loss: float, batch: dict[str, torch.Tensor]) -> None:
        self.loss_sum += loss
        self.steps += 1
        # Packed rows have no mask: every position is computed, the tail padding included.
        mask = batch.get("attention_mask")
        self.tokens += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        self.samples += len(batch["input_ids"])

    def summary(self) -> dict[str, float]:
        """A collective: every worker calls it at the same step."""
        seconds = time.perf_counter() - self.started
        totals = torch.tensor([self.loss_sum, self.steps, self.tokens, self.samples], dtype=torch.float64,
                              device=self.device)
        dist.all_reduce(totals)
        memory = torch.tensor([peak_memory_mb(self.device)], device=self.device)
        dist.all_reduce(memory, op=dist.ReduceOp.MAX)
        loss_sum, steps, tokens, samples = totals.tolist()
        metrics = {"train_loss": loss_sum / steps, "tokens_per_second": tokens / seconds,
                   "samples_per_second": samples / seconds, "peak_memory_mb": memory.item()}
        peak = peak_flops(self.device)
        if peak is not None:
            metrics["mfu"] = metrics["tokens_per_second"] * self.flops_per_token / (peak * dist.get_world_size())
        return metrics
