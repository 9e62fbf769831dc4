"""Workers: the loop's steps as jobs, and the schedulers that run them."""
