"""Job specs: YAML files validated once at load into frozen pydantic models."""
