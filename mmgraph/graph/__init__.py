"""mmgraph.graph"""
