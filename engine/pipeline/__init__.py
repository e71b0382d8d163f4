"""The extraction pipeline: plan (cache decisions), schedule (per-modality runs, batching), worker, runner (Ray)."""
