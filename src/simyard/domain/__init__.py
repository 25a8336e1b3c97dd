"""Tables, states and their transitions, and the services: the only code that commits."""
