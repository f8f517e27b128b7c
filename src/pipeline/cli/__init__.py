"""Command-line tools: pipeline-ui, pipeline-compare, pipeline-rerun, pipeline-predict (pipeline-train is
pipeline.train)."""
