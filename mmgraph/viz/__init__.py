"""mmgraph.viz"""
