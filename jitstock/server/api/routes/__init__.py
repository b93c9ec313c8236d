"""One router per resource; create_api includes them all."""
