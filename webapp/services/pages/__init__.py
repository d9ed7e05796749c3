"""Read models for pages: what the board, the overview, a flag's track, the run panels, the
change-request pages and live updates show. Reads only."""
