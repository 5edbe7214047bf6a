"""Claims: checks reported claims against the cover and pays what the product terms give."""
