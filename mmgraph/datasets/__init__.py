"""mmgraph.datasets"""
