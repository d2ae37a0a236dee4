"""The parts of the lead finder (see digest.summarize): source cleaning, inline runs, kinds of
paragraph that are not prose, and the trimmed HTML and text output."""
