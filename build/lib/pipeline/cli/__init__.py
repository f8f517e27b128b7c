"""Command-line tools: pipeline-ui, pipeline-compare, pipeline-rerun (pipeline-train is pipeline.train)."""
