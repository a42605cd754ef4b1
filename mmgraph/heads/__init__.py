"""mmgraph.heads"""
