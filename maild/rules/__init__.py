"""YAML workflow rules on a scheduler (the next issue: schema, triggers, conditions, actions, engine)."""
