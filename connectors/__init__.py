"""Where claims enter (sources) and where decisions leave (sinks)."""
